/**
 * A long batch response waits for 'drain' many times; each wait must leave no listener behind
 * (before the fix every wait left a 'close' and an 'error' listener on the response until it ended,
 * and Node warned of a listener leak during large queries).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { drainOrClose } from '../src/http/routes/batch-v1.js';

test('waiting for drain a hundred times leaves no listener on the response', async () => {
  const res = new EventEmitter();
  for (let i = 0; i < 100; i++) {
    const waiting = drainOrClose(res as unknown as ServerResponse);
    res.emit('drain');
    await waiting;
  }
  assert.equal(res.listenerCount('drain'), 0);
  assert.equal(res.listenerCount('close'), 0);
  assert.equal(res.listenerCount('error'), 0);
});

test('a close ends the wait too', async () => {
  const res = new EventEmitter();
  const waiting = drainOrClose(res as unknown as ServerResponse);
  res.emit('close');
  await waiting;
  assert.equal(res.listenerCount('drain') + res.listenerCount('close'), 0);
});
