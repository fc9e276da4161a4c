// auth: lets a request through only when its `x-api-key` header equals the plugin configuration;
// anything else (a missing header, a wrong key, or any request when the configuration is empty)
// gets a local 403 "denied by wasm\n" with `x-denied-by: auth` (details "wasm-auth-denied").
// Configuration: the expected API key, as a plain string.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, GrpcStatusValues, HeaderPair,
  stream_context, send_local_response,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

class AuthRoot extends RootContext {
  apiKey: string = "";

  // Read the configuration ourselves: the SDK's RootContext.onConfigure passes the size where the
  // size pointer belongs.
  onConfigure(configuration_size: u32): bool {
    this.apiKey = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size));
    return true;
  }

  createContext(context_id: u32): Context {
    return new Auth(context_id, this);
  }
}

class Auth extends Context {
  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const expected = (this.root_context as AuthRoot).apiKey;
    // The SDK's get() answers "" for a missing header as for an empty one.
    const given = stream_context.headers.request.get("x-api-key");
    if (expected.length > 0 && given == expected) {
      return FilterHeadersStatusValues.Continue;
    }
    send_local_response(403, "wasm-auth-denied", String.UTF8.encode("denied by wasm\n"),
      [new HeaderPair(String.UTF8.encode("x-denied-by"), String.UTF8.encode("auth"))],
      GrpcStatusValues.InvalidCode);
    return FilterHeadersStatusValues.StopIteration;
  }
}

// The SDK picks the factory by the `plugin_root_id` property: "" when no root_id is configured.
registerRootContext((context_id: u32): RootContext => new AuthRoot(context_id), "");
registerRootContext((context_id: u32): RootContext => new AuthRoot(context_id), "auth");
