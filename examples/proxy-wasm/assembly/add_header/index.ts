// add_header: adds `x-wasm-request: seen` to every request and `x-wasm-filter: <config>` to every
// response (`x-wasm-filter: add_header` when the plugin configuration is empty).
// Logs "add_header: vm started" on VM start and "add_header: configured with <config>" on configure.
// Configuration: any string, copied into the response header.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, log, LogLevelValues,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

class AddHeaderRoot extends RootContext {
  config: string = "";
  header_value: string = "add_header";

  onStart(vm_configuration_size: usize): bool {
    log(LogLevelValues.info, "add_header: vm started");
    return true;
  }

  // The SDK's own RootContext.onConfigure passes configuration_size where a pointer belongs, so
  // every filter here reads the plugin configuration itself.
  onConfigure(configuration_size: u32): bool {
    this.config = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size));
    log(LogLevelValues.info, "add_header: configured with " + this.config);
    if (this.config.length > 0) this.header_value = this.config;
    return true;
  }

  createContext(context_id: u32): Context {
    return new AddHeader(context_id, this);
  }
}

class AddHeader extends Context {
  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.request.add("x-wasm-request", "seen");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    // The field is passed as it is: asc 0.14 releases the result of `cond ? field : literal`
    // once too often, which frees the configuration string after the first response.
    stream_context.headers.response.add("x-wasm-filter", (this.root_context as AddHeaderRoot).header_value);
    return FilterHeadersStatusValues.Continue;
  }
}

// The SDK picks the factory by the `plugin_root_id` property: "" when no root_id is configured.
registerRootContext((context_id: u32): RootContext => new AddHeaderRoot(context_id), "");
registerRootContext((context_id: u32): RootContext => new AddHeaderRoot(context_id), "add_header");
