// Loaded into a benchmarked `serve` child with `--import` (never by the product): on the message 'measure' from its
// parent it runs two full garbage collections (the child runs with --expose-gc) and answers with
// process.memoryUsage(), so the parent reads live heap, not garbage the collector has not reached yet.
process.channel?.unref(); // the channel must not keep the child alive once `serve` has stopped
process.on('message', (message) => {
  if (message !== 'measure') return;
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  process.send?.({ ...process.memoryUsage(), cpu: process.cpuUsage(), collected: gc !== undefined });
});
