// properties: on response headers, copies host properties into response headers:
// `x-wasm-path` <- request.path, `x-wasm-plugin-name` <- plugin_name,
// `x-wasm-source` <- source.address (each only when the host has the property), and adds
// `x-wasm-missing: notfound` when the host answers NotFound for `no.such.property`.
// Property paths are sent as Envoy's SDKs send them: the segments joined by NUL bytes
// ("request\0path"); a single-segment name ("plugin_name") is just that name.
// Configuration: none.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, WasmResultValues, stream_context,
} from "@solo-io/proxy-runtime";
import { Reference } from "@solo-io/proxy-runtime/runtime";
import { free } from "@solo-io/proxy-runtime/malloc";
import * as imports from "@solo-io/proxy-runtime/imports";

// The SDK's get_property aborts the VM (proc_exit 255) on any result but Ok, NotFound included, so
// the host function is called here.
const valueData = new Reference<usize>();
const valueSize = new Reference<usize>();

function getProperty(segments: string[]): string | null {
  const path = String.UTF8.encode(segments.join("\0"));
  const result = imports.proxy_get_property(changetype<usize>(path), path.byteLength, valueData.ptr(), valueSize.ptr());
  if (result != WasmResultValues.Ok) {
    return null;
  }
  const value = String.UTF8.decodeUnsafe(valueData.data, valueSize.data);
  free(valueData.data); // the host allocated the value with our malloc
  return value;
}

class PropertiesRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new Properties(context_id, this);
  }
}

class Properties extends Context {
  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    copy("x-wasm-path", getProperty(["request", "path"]));
    copy("x-wasm-plugin-name", getProperty(["plugin_name"]));
    copy("x-wasm-source", getProperty(["source", "address"]));
    if (getProperty(["no", "such", "property"]) === null) {
      stream_context.headers.response.add("x-wasm-missing", "notfound");
    }
    return FilterHeadersStatusValues.Continue;
  }
}

function copy(name: string, value: string | null): void {
  if (value !== null) {
    stream_context.headers.response.add(name, value);
  }
}

// The SDK picks the factory by the `plugin_root_id` property: "" when no root_id is configured.
registerRootContext((context_id: u32): RootContext => new PropertiesRoot(context_id), "");
registerRootContext((context_id: u32): RootContext => new PropertiesRoot(context_id), "properties");
