// tick_pause: the root context sets a 100 ms tick on configure and logs "tick_pause: tick <n>" (info,
// n from 1) on each tick. Every request pauses on its headers (StopIteration) and is registered with
// the root; the next tick resumes each paused stream: it makes the stream the effective context,
// adds the request header `x-paused-ticks: 1` and calls continue_request.
// Configuration: none.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, WasmResultValues, stream_context,
  continue_request, proxy_set_effective_context, log, LogLevelValues,
} from "@solo-io/proxy-runtime";
import { set_tick_period_milliseconds } from "@solo-io/proxy-runtime/runtime";

class TickPauseRoot extends RootContext {
  ticks: u32 = 0;
  paused: Array<u32> = [];

  onConfigure(configuration_size: u32): bool {
    set_tick_period_milliseconds(100);
    return true;
  }

  onTick(): void {
    this.ticks++;
    log(LogLevelValues.info, "tick_pause: tick " + this.ticks.toString());
    const streams = this.paused;
    this.paused = [];
    for (let i = 0; i < streams.length; i++) {
      if (proxy_set_effective_context(streams[i]) != WasmResultValues.Ok) continue;
      stream_context.headers.request.add("x-paused-ticks", "1");
      continue_request();
    }
  }

  forget(context_id: u32): void {
    const i = this.paused.indexOf(context_id);
    if (i >= 0) this.paused.splice(i, 1);
  }

  createContext(context_id: u32): Context {
    return new TickPause(context_id, this);
  }
}

class TickPause extends Context {
  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    (this.root_context as TickPauseRoot).paused.push(this.context_id);
    return FilterHeadersStatusValues.StopIteration;
  }

  // A stream that ends before the tick (client gone) must not be resumed.
  onDone(): bool {
    (this.root_context as TickPauseRoot).forget(this.context_id);
    return true;
  }
}

// The SDK picks the factory by the `plugin_root_id` property: "" when no root_id is configured.
registerRootContext((context_id: u32): RootContext => new TickPauseRoot(context_id), "");
registerRootContext((context_id: u32): RootContext => new TickPauseRoot(context_id), "tick_pause");
