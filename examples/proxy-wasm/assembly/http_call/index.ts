// http_call: on request headers, dispatches `GET /check` (`:authority auth`, plus
// `x-original-path: <request :path>`, timeout 1000 ms) to the cluster named by the configuration and
// pauses. A 200 answer adds the request header `x-auth-status: ok` and resumes the request; any other
// answer (or a failed call) gets a local 403 "denied by auth service\n". If the dispatch itself
// fails (an unknown cluster), the request gets a local 503 "http_call failed\n".
// Configuration: the cluster name.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, GrpcStatusValues, WasmResultValues,
  HeaderPair, Headers, stream_context, send_local_response, continue_request,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

function header(key: string, value: string): HeaderPair {
  return new HeaderPair(String.UTF8.encode(key), String.UTF8.encode(value));
}

// Called by the SDK's RootContext.onHttpCallResponse (the host calls proxy_on_http_call_response on
// the root context), after it made the paused stream the effective context.
function onCheckResponse(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  // headers == 0: the call failed or was cancelled; :status then reads as "".
  const status = stream_context.headers.http_callback.get(":status");
  if (status == "200") {
    stream_context.headers.request.add("x-auth-status", "ok");
    continue_request();
  } else {
    send_local_response(403, "wasm-http-call-denied", String.UTF8.encode("denied by auth service\n"), [], GrpcStatusValues.InvalidCode);
  }
}

class HttpCallRoot extends RootContext {
  cluster: string = "";

  // Read the configuration ourselves: the SDK's RootContext.onConfigure passes the size where the
  // size pointer belongs.
  onConfigure(configuration_size: u32): bool {
    this.cluster = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size));
    return true;
  }

  createContext(context_id: u32): Context {
    return new HttpCall(context_id, this);
  }
}

class HttpCall extends Context {
  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const root = this.root_context as HttpCallRoot;
    const call: Headers = [
      header(":method", "GET"),
      header(":path", "/check"),
      header(":authority", "auth"),
      header("x-original-path", stream_context.headers.request.get(":path")),
    ];
    const result = root.httpCall(root.cluster, call, new ArrayBuffer(0), [], 1000, this, onCheckResponse);
    if (result != WasmResultValues.Ok) {
      send_local_response(503, "wasm-http-call-failed", String.UTF8.encode("http_call failed\n"), [], GrpcStatusValues.InvalidCode);
    }
    return FilterHeadersStatusValues.StopIteration;
  }
}

// The SDK picks the factory by the `plugin_root_id` property: "" when no root_id is configured.
registerRootContext((context_id: u32): RootContext => new HttpCallRoot(context_id), "");
registerRootContext((context_id: u32): RootContext => new HttpCallRoot(context_id), "http_call");
