import fs from 'node:fs';
import inspector from 'node:inspector';
import path from 'node:path';

/**
 * A V8 CPU profile of this very process over a stretch chosen by the caller (`node --cpu-prof`
 * covers the whole life: set-up, warm-up and baselines too). Written as a .cpuprofile that
 * hotSpots() and Chrome's profiler read.
 */
export class SelfProfile {
  private readonly session = new inspector.Session();

  private post(method: string, params: object = {}): Promise<unknown> {
    return new Promise((resolve, reject) =>
      this.session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))),
    );
  }

  async start(intervalUs = 1000): Promise<void> {
    this.session.connect();
    await this.post('Profiler.enable');
    await this.post('Profiler.setSamplingInterval', { interval: intervalUs });
    await this.post('Profiler.start');
  }

  /** Stops the profiler and writes the profile as `dir/name.cpuprofile`; returns the file. */
  async stop(dir: string, name: string): Promise<string> {
    const { profile } = (await this.post('Profiler.stop')) as { profile: unknown };
    this.session.disconnect();
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${name}.cpuprofile`);
    fs.writeFileSync(file, JSON.stringify(profile));
    return file;
  }
}
