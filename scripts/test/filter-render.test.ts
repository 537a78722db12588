// What `wasmesh filter status` prints (scripts/cli/filter-render.ts): after a rollback the last
// rollout's block must not contradict the "serving:" line.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FilterStatusBody } from '../../orchestrator/src/http/filters.ts';
import { DEFAULT_THRESHOLDS, type RolloutStatus } from '../../orchestrator/src/rollout/controller.ts';
import { renderStatus } from '../cli/filter-render.ts';

const OLD = 'a'.repeat(64);
const NEW = 'b'.repeat(64);
const NOW = Date.parse('2025-01-01T12:00:00Z');
const at = (secondsAgo: number): string => new Date(NOW - secondsAgo * 1000).toISOString();

function rollout(over: Partial<RolloutStatus> = {}): RolloutStatus {
  return {
    namespace: 'default',
    plugin: 'auth',
    from: { sha256: OLD, name: 'auth', version: '1.0.0' },
    to: { sha256: NEW, name: 'auth', version: '1.1.0' },
    steps: [5, 25, 50, 100],
    intervalMs: 30_000,
    step: 3,
    weight: 100,
    phase: 'Succeeded',
    message: 'auth@1.1.0 serves every stream',
    thresholds: DEFAULT_THRESHOLDS,
    startedAt: at(600),
    stepStartedAt: at(330),
    finishedAt: at(300),
    startedBy: 'admin:t1',
    ...over,
  };
}

function body(serving: { sha256: string; version: string }, history: FilterStatusBody['history'], r: RolloutStatus): FilterStatusBody {
  return {
    namespace: 'default',
    plugin: 'auth',
    module: 'auth',
    current: { url: `digest:sha256:${serving.sha256}`, ...serving },
    versions: [
      { name: 'auth', version: '1.0.0', sha256: OLD, size: 100, uploadedBy: 'admin:t1', uploadedAt: at(900), current: serving.sha256 === OLD, canary: false },
      { name: 'auth', version: '1.1.0', sha256: NEW, size: 120, uploadedBy: 'admin:t1', uploadedAt: at(700), current: serving.sha256 === NEW, canary: false },
    ],
    history,
    rollout: r,
  };
}

const deployed = { url: 'module://auth@1.0.0', at: at(900), by: 'admin:t1', sha256: OLD, version: '1.0.0' };
const promoted = { url: `digest:sha256:${NEW}`, at: at(300), by: 'orchestrator:rollout', sha256: NEW, version: '1.1.0' };
const rolledBack = { url: `digest:sha256:${OLD}`, at: at(60), by: 'admin:t2', cause: 'rollback to auth@1.0.0', sha256: OLD, version: '1.0.0' };

test('filter status after a rollback: 1.0.0 serves, the rollback is named, 1.1.0 is not said to serve', () => {
  const text = renderStatus(body({ sha256: OLD, version: '1.0.0' }, [deployed, promoted, rolledBack], rollout()), NOW);
  assert.match(text, /serving: auth@1\.0\.0\n/);
  assert.not.match(text, /1\.1\.0 serves every stream/);
  assert.not.match(text, /100%.*of streams on the new version/);
  assert.match(text, /last rollout auth@1\.0\.0 -> auth@1\.1\.0: Succeeded/);
  assert.match(text, /ended 5m ago; since then: rollback to auth@1\.0\.0 \(60s ago, by admin:t2\); auth@1\.0\.0 serves every stream/);
});

test('filter status after a succeeded rollout (no rollback): its bar and message as before', () => {
  const text = renderStatus(body({ sha256: NEW, version: '1.1.0' }, [deployed, promoted], rollout()), NOW);
  assert.match(text, /serving: auth@1\.1\.0\n/);
  assert.match(text, /100% of streams on the new version; ended 5m ago/);
  assert.match(text, /auth@1\.1\.0 serves every stream/);
  assert.not.match(text, /since then/);
});

test('filter status after a rolled-back rollout, still on the old version: nothing changed since', () => {
  const r = rollout({ phase: 'RolledBack', weight: 0, message: 'the new version trapped 3 time(s)' });
  const text = renderStatus(body({ sha256: OLD, version: '1.0.0' }, [deployed], r), NOW);
  assert.match(text, /last rollout auth@1\.0\.0 -> auth@1\.1\.0: RolledBack/);
  assert.match(text, /the new version trapped 3 time\(s\)/);
  assert.not.match(text, /since then/);
});

test('filter status: a deploy after a rolled-back rollout is named', () => {
  const r = rollout({ phase: 'RolledBack', weight: 0, message: 'the new version trapped 3 time(s)' });
  const manual = { url: `digest:sha256:${NEW}`, at: at(30), by: 'admin:t3', sha256: NEW, version: '1.1.0' };
  const text = renderStatus(body({ sha256: NEW, version: '1.1.0' }, [deployed, manual], r), NOW);
  assert.match(text, /since then: a deploy \(30s ago, by admin:t3\); auth@1\.1\.0 serves every stream/);
  assert.not.match(text, /trapped 3 time/);
});

test.run();
