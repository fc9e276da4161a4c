// body_rewrite: buffers the whole request body and answers a local 400 "invalid json\n" unless it
// looks like a JSON object (first non-space byte `{`, last non-space byte `}`); buffers the whole
// response body and replaces it with its ASCII upper-case form (set_buffer_bytes over the whole
// body), dropping the response's `content-length` since the host must recompute it.
// Configuration: none.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, FilterDataStatusValues,
  GrpcStatusValues, stream_context, send_local_response,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

// The SDK has no proxy_set_buffer_bytes wrapper (its proxy_set_buffer_status is bound to the
// host's proxy_get_buffer_status by mistake), so the host function is declared here.
// @ts-ignore: decorator
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(buffer_type: i32, start: u32, length: u32, data: usize, size: usize): u32;

function isSpace(c: u8): bool {
  return c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d;
}

function looksLikeJsonObject(body: Uint8Array): bool {
  let first = 0;
  let last = body.length - 1;
  while (first <= last && isSpace(body[first])) first++;
  while (last >= first && isSpace(body[last])) last--;
  return first < last && body[first] == 0x7b && body[last] == 0x7d; // '{' ... '}'
}

class BodyRewriteRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new BodyRewrite(context_id, this);
  }
}

class BodyRewrite extends Context {
  onRequestBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) {
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    const body = Uint8Array.wrap(get_buffer_bytes(BufferTypeValues.HttpRequestBody, 0, body_buffer_length as u32));
    if (!looksLikeJsonObject(body)) {
      send_local_response(400, "wasm-invalid-json", String.UTF8.encode("invalid json\n"), [], GrpcStatusValues.InvalidCode);
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    return FilterDataStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.remove("content-length");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) {
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    const length = body_buffer_length as u32;
    const body = Uint8Array.wrap(get_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, length));
    for (let i = 0; i < body.length; i++) {
      const c = body[i];
      if (c >= 0x61 && c <= 0x7a) body[i] = c - 0x20; // a-z -> A-Z
    }
    proxy_set_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, length, body.dataStart, body.length);
    return FilterDataStatusValues.Continue;
  }
}

// The SDK picks the factory by the `plugin_root_id` property: "" when no root_id is configured.
registerRootContext((context_id: u32): RootContext => new BodyRewriteRoot(context_id), "");
registerRootContext((context_id: u32): RootContext => new BodyRewriteRoot(context_id), "body_rewrite");
