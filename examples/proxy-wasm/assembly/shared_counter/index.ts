// shared_counter: counts requests in the VM-wide shared data key `request_count` (an ASCII decimal;
// missing means 0): on request headers it reads the value and its CAS, writes count+1 with that CAS
// (retrying on CasMismatch, 5 tries at most), then adds `x-request-count: <new count>` to the
// response. If every try fails the response gets no header.
// Configuration: none.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, WasmResultValues, stream_context, log,
  LogLevelValues,
} from "@solo-io/proxy-runtime";
import { Reference } from "@solo-io/proxy-runtime/runtime";
import { free } from "@solo-io/proxy-runtime/malloc";
import * as imports from "@solo-io/proxy-runtime/imports";

// The SDK's get_shared_data/set_shared_data pass their arguments in the wrong slots (a buffer where
// the host expects a pointer to a pointer, and the reverse), so the host functions are called here.
const KEY = String.UTF8.encode("request_count");
const valueData = new Reference<usize>();
const valueSize = new Reference<usize>();
const casValue = new Reference<u32>();

function parseCount(data: usize, size: usize): u64 {
  let n: u64 = 0;
  for (let i: usize = 0; i < size; i++) {
    const c = load<u8>(data + i);
    if (c < 0x30 || c > 0x39) break;
    n = n * 10 + (c - 0x30);
  }
  return n;
}

// Returns the new count, or 0 when the update did not go through.
function incrementRequestCount(): u64 {
  for (let attempt = 0; attempt < 5; attempt++) {
    let count: u64 = 0;
    let cas: u32 = 0;
    const got = imports.proxy_get_shared_data(changetype<usize>(KEY), KEY.byteLength, valueData.ptr(), valueSize.ptr(), casValue.ptr());
    if (got == WasmResultValues.Ok) {
      count = parseCount(valueData.data, valueSize.data);
      cas = casValue.data;
      free(valueData.data); // the host allocated the value with our malloc
    } else if (got != WasmResultValues.NotFound) {
      return 0;
    }
    const next = String.UTF8.encode((count + 1).toString());
    const set = imports.proxy_set_shared_data(changetype<usize>(KEY), KEY.byteLength, changetype<usize>(next), next.byteLength, cas);
    if (set == WasmResultValues.Ok) {
      return count + 1;
    }
    if (set != WasmResultValues.CasMismatch) {
      return 0;
    }
  }
  return 0;
}

class SharedCounterRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new SharedCounter(context_id, this);
  }
}

class SharedCounter extends Context {
  count: u64 = 0;

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    this.count = incrementRequestCount();
    if (this.count == 0) {
      log(LogLevelValues.warn, "shared_counter: could not update request_count");
    }
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (this.count > 0) {
      stream_context.headers.response.add("x-request-count", this.count.toString());
    }
    return FilterHeadersStatusValues.Continue;
  }
}

// The SDK picks the factory by the `plugin_root_id` property: "" when no root_id is configured.
registerRootContext((context_id: u32): RootContext => new SharedCounterRoot(context_id), "");
registerRootContext((context_id: u32): RootContext => new SharedCounterRoot(context_id), "shared_counter");
