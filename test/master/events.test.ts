import { describe, expect, it } from 'vitest';
import { RegistryEvents } from '../../master/events.js';

describe('parked long polls (RegistryEvents.parkForSite)', () => {
  it('wakes a parked poll once on its site notification and forgets it', () => {
    const events = new RegistryEvents();
    let woken = 0;
    events.parkForSite('site-a', 60_000, () => woken++);
    events.parkForSite('site-b', 60_000, () => woken++);
    expect(events.waiting().sites).toBe(2);
    events.notifySite('site-a');
    events.notifySite('site-a');
    expect(woken).toBe(1);
    expect(events.waiting().sites).toBe(1);
    events.wakeEverything();
    expect(woken).toBe(2);
    expect(events.waiting().sites).toBe(0);
  });

  it('never wakes a cancelled poll, and a second cancel changes nothing', () => {
    const events = new RegistryEvents();
    let woken = 0;
    const cancel = events.parkForSite('site-a', 60_000, () => woken++);
    const other = events.parkForSite('site-a', 60_000, () => woken++);
    cancel();
    cancel();
    expect(events.waiting().sites).toBe(1);
    events.notifySite('site-a');
    expect(woken).toBe(1);
    other();
    expect(events.waiting().sites).toBe(0);
  });

  it('wakes a parked poll when its time is up, and not again on a later notification', async () => {
    const events = new RegistryEvents();
    let woken = 0;
    await new Promise<void>((resolve) =>
      events.parkForSite('site-a', 5, () => {
        woken++;
        resolve();
      }),
    );
    expect(events.waiting().sites).toBe(0);
    events.notifySite('site-a');
    expect(woken).toBe(1);
  });
});
