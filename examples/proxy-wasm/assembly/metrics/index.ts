// metrics: defines the counter `wasm_filter_requests_total`, the gauge
// `wasm_filter_active_requests` and the histogram `wasm_filter_request_path_length`. Per request:
// counter +1 and gauge +1 on request headers, histogram records the length of `:path`; gauge -1
// when the stream ends (on done, or on log if done never came).
// Configuration: none.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, Counter, Gauge, Histogram,
} from "@solo-io/proxy-runtime";
import { record_metric } from "@solo-io/proxy-runtime/runtime";

class MetricsRoot extends RootContext {
  requests: Counter;
  active: Gauge;
  pathLength: Histogram;

  // Defined when the host creates the root context, before any stream can exist.
  constructor(context_id: u32) {
    super(context_id);
    this.requests = new Counter("wasm_filter_requests_total");
    this.active = new Gauge("wasm_filter_active_requests");
    this.pathLength = new Histogram("wasm_filter_request_path_length");
  }

  createContext(context_id: u32): Context {
    return new Metrics(context_id, this);
  }
}

class Metrics extends Context {
  counted: bool = false;

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const root = this.root_context as MetricsRoot;
    root.requests.increment(1);
    root.active.increment(1);
    this.counted = true;
    // Bytes of the header value, as the host stores it.
    const path = String.UTF8.encode(stream_context.headers.request.get(":path"));
    record_metric(root.pathLength.metric_id, path.byteLength as u64);
    return FilterHeadersStatusValues.Continue;
  }

  onDone(): bool {
    this.finish();
    return true;
  }

  onLog(): void {
    this.finish();
  }

  finish(): void {
    if (this.counted) {
      this.counted = false;
      (this.root_context as MetricsRoot).active.increment(-1);
    }
  }
}

// The SDK picks the factory by the `plugin_root_id` property: "" when no root_id is configured.
registerRootContext((context_id: u32): RootContext => new MetricsRoot(context_id), "");
registerRootContext((context_id: u32): RootContext => new MetricsRoot(context_id), "metrics");
