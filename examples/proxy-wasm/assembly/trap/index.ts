// trap: traps the VM (a Wasm `unreachable`) on request headers when the request carries an `x-trap`
// header (any value, empty included); otherwise the request continues. For testing how the host
// survives a crashed plugin.
// Configuration: none.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, WasmResultValues,
} from "@solo-io/proxy-runtime";
import { Reference, HeaderMapTypeValues } from "@solo-io/proxy-runtime/runtime";
import * as imports from "@solo-io/proxy-runtime/imports";

const NAME = String.UTF8.encode("x-trap");
const valueData = new Reference<usize>();
const valueSize = new Reference<usize>();

class TrapRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new Trap(context_id, this);
  }
}

class Trap extends Context {
  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    // The host's own answer, so that a present but empty header counts (the SDK's get() says "").
    const result = imports.proxy_get_header_map_value(HeaderMapTypeValues.RequestHeaders,
      changetype<usize>(NAME), NAME.byteLength, valueData.ptr(), valueSize.ptr());
    if (result == WasmResultValues.Ok) {
      unreachable();
    }
    return FilterHeadersStatusValues.Continue;
  }
}

// The SDK picks the factory by the `plugin_root_id` property: "" when no root_id is configured.
registerRootContext((context_id: u32): RootContext => new TrapRoot(context_id), "");
registerRootContext((context_id: u32): RootContext => new TrapRoot(context_id), "trap");
