/** `ferry tasks`: what runs now on the server (`GET /api/v1/active_tasks`). */
import { Command } from 'commander';
import { clientOf, outputOf } from '../connection.js';
import { formatBytes, printJson, printTable } from '../output.js';
import { act } from './act.js';

/** The `tasks` command. */
export function tasksCommand(): Command {
  return new Command('tasks')
    .description('list what runs now (replications, copies) with their progress')
    .action(
      act({}, async (cmd) => {
        const tasks = await (await clientOf(cmd)).activeTasks();
        if (outputOf(cmd).json) return printJson(tasks);
        printTable(
          ['type', 'name', 'state', 'source', 'destination', 'pending', 'lag ms', 'records/s'],
          tasks.map((t) =>
            t.type === 'verification'
              ? [t.type, t.name, t.phase, '', '', `${t.progress.percent}%`, '', '']
              : [
                  t.type,
                  t.name,
                  t.state,
                  t.source.bucket,
                  `${t.destination.host || '(this server)'} ${t.destination.bucket}`,
                  `${t.pending_records} (${formatBytes(t.pending_bytes)})`,
                  t.lag_ms,
                  t.throughput.last_10s.records_per_sec,
                ],
          ),
          '(nothing runs)',
        );
      }),
    );
}
