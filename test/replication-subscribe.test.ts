/**
 * `ReplicationManager.subscribe` (issue 9 item 1, the events stream's source): every state
 * transition of a replication's task arrives as `{type: 'state', from, to, reason, at}` at the
 * moment it happens (a pause is announced before `setMode` resolves), figures that change arrive as
 * `{type: 'changed'}`, listeners survive a replacement of the task (PUT), and unsubscribing stops
 * them. Local and remote targets alike.
 */
import assert from 'node:assert/strict';
import type { TaskEvent } from '../src/replication/task.js';
import { forEachTarget, statusOf, writeText } from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

forEachTarget('subscribers hear every transition and every change, from creation on', async (env) => {
  const events: TaskEvent[] = [];
  const off = env.manager.subscribe('r', (e) => events.push(e));
  await env.replicate('r');
  assert.ok(
    events.some((e) => e.type === 'changed'),
    'creation is announced',
  );
  const transitions = () =>
    events
      .filter((e): e is Extract<TaskEvent, { type: 'state' }> => e.type === 'state')
      .map((e) => `${e.from}>${e.to}`);
  assert.ok(transitions().includes('initializing>idle'), transitions().join(' '));

  const changed = events.filter((e) => e.type === 'changed').length;
  for (let i = 1n; i <= 5n; i++) await writeText(env.storage, 'src', 'e', i, `v${i}`);
  await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 5, { message: 'delivered' });
  await waitFor(() => transitions().at(-1) === 'replicating>idle', { message: 'back to idle' });
  assert.ok(transitions().includes('idle>replicating'), transitions().join(' '));
  assert.ok(events.filter((e) => e.type === 'changed').length > changed, 'deliveries are announced');

  await env.manager.setMode('r', { mode: 'paused' });
  const last = events.filter((e) => e.type === 'state').at(-1) as Extract<TaskEvent, { type: 'state' }>;
  assert.deepEqual([last.from, last.to, last.reason], ['idle', 'paused', 'mode is paused']);
  assert.ok(Math.abs(Date.parse(last.at) - Date.now()) < 5000);

  // enabled again, it ships what came meanwhile
  await writeText(env.storage, 'src', 'e', 6n, 'v6');
  await env.manager.setMode('r', { mode: 'enabled' });
  await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 6, { message: 'resumed' });
  await waitFor(() => transitions().at(-1)?.endsWith('>idle'), { message: 'idle after resuming' });

  // a PUT replaces the task: the listener stays subscribed
  await env.manager.update('r', { src_bucket: 'src', dst_bucket: 'dst', ...env.destination });
  await waitFor(() => transitions().at(-1)?.endsWith('>idle'), { message: 'the new task idle' });
  // nothing failed: no state on the way said 'retrying' (a PATCH or PUT of a healthy
  // replication scheduled a retry without an error, and status showed it retrying)
  assert.ok(!transitions().some((t) => t.endsWith('>retrying')), transitions().join(' '));

  off();
  const n = events.length;
  await env.manager.setMode('r', { mode: 'paused' });
  await writeText(env.storage, 'src', 'e', 10n, 'after');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(events.length, n, 'no event after unsubscribing');
});
