import { describe, expect, it } from 'vitest';
import { TimerWheel } from '../../lib/reactor/timer-wheel.js';
import { guardLeaks } from '../helpers/leaks.js';

describe('TimerWheel', () => {
  guardLeaks();

  it('runs callbacks in deadline order with one OS timer, and holds none when idle', async () => {
    const wheel = new TimerWheel();
    const order: number[] = [];
    const done = new Promise<void>((resolve) => {
      wheel.schedule(30, () => {
        order.push(30);
        resolve();
      });
    });
    wheel.schedule(10, () => order.push(10));
    wheel.schedule(20, () => order.push(20));
    wheel.schedule(0, () => order.push(0));
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBeGreaterThanOrEqual(1);
    await done;
    expect(order).toEqual([0, 10, 20, 30]);
    expect(wheel.size).toBe(0);
  });

  it('never runs a cancelled entry, even one due in the same tick', async () => {
    const wheel = new TimerWheel();
    const ran: string[] = [];
    let b = 0;
    wheel.schedule(5, () => {
      ran.push('a');
      wheel.cancel(b);
    });
    b = wheel.schedule(5, () => ran.push('b'));
    const c = wheel.schedule(1, () => ran.push('c'));
    wheel.cancel(c);
    wheel.cancel(c); // twice is harmless
    await new Promise<void>((resolve) => wheel.schedule(20, resolve));
    expect(ran).toEqual(['a']);
  });

  it('reports a throwing callback and keeps running the others', async () => {
    const errors: unknown[] = [];
    const wheel = new TimerWheel((err) => errors.push(err));
    wheel.schedule(1, () => {
      throw new Error('boom');
    });
    await new Promise<void>((resolve) => wheel.schedule(2, resolve));
    expect(errors).toHaveLength(1);
  });

  it('clear() drops every entry and the OS timer', () => {
    const wheel = new TimerWheel();
    let ran = false;
    wheel.schedule(1, () => (ran = true));
    wheel.clear();
    expect(wheel.size).toBe(0);
    expect(ran).toBe(false);
  });
});
