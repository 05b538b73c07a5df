import { Writable } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TerminalReporter } from '../../src/report/terminal.js';
import type { EpochLogs } from '../../src/train/progress.js';

// What a person sees: a redrawn progress bar on a terminal, plain epoch lines in a CI log.

class Capture extends Writable {
  text = '';
  constructor(readonly isTTY: boolean, readonly columns?: number) {
    super();
  }
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

const logs: EpochLogs = { epoch: 1, loss: 0.5, accuracy: 0.75, val_loss: 0.6, val_accuracy: 0.7, seconds: 1.2 };

function drive(out: Capture, quiet = false) {
  const err = new Capture(false);
  const observer = new TerminalReporter({ out, err, quiet }).observerFor();
  observer.epochStart(1, 3, 10);
  if (observer.wantsBatchUpdate()) observer.batchEnd(4, 10, 0.51234, 0.7321);
  observer.epochEnd(logs, 3, 'val_accuracy improved');
  return { wanted: observer.wantsBatchUpdate, err };
}

test('on a TTY: a bar with batch, ETA, running loss and accuracy, cleared before the epoch line', () => {
  const out = new Capture(true, 200);
  drive(out);
  const [bar, rest] = out.text.split('\r\x1b[K');
  assert.match(bar, /^\r  Epoch 1\/3 \[=+>\.+\] 4\/10 - ETA \d+s - loss: 0\.5123 - accuracy: 0\.7321\x1b\[K$/);
  assert.is(rest, '  Epoch 1/3 - 1.2s - loss: 0.5000 - accuracy: 0.7500 - val_loss: 0.6000 - val_accuracy: 0.7000 (val_accuracy improved)\n');
});

test('on a narrow terminal the bar is cut to fit, so \\r redraws the whole line', () => {
  const out = new Capture(true, 40);
  drive(out);
  const bar = out.text.split('\r\x1b[K')[0].replace(/^\r/, '').replace(/\x1b\[K$/, '');
  assert.is(bar.length, 39);
});

test('without a TTY (CI): only the finished epoch line, no escape codes, no batch updates asked for', () => {
  const out = new Capture(false);
  const { wanted } = drive(out);
  assert.not.ok(wanted());
  assert.is(out.text, '  Epoch 1/3 - 1.2s - loss: 0.5000 - accuracy: 0.7500 - val_loss: 0.6000 - val_accuracy: 0.7000 (val_accuracy improved)\n');
});

test('--quiet: nothing on stdout, even on a TTY; warnings still reach stderr', () => {
  const out = new Capture(true, 120);
  const err = new Capture(false);
  const reporter = new TerminalReporter({ out, err, quiet: true });
  const observer = reporter.observerFor();
  observer.epochStart(1, 3, 10);
  assert.not.ok(observer.wantsBatchUpdate());
  observer.epochEnd(logs, 3);
  observer.info('hello');
  reporter.warning('the report of run x could not be written');
  assert.is(out.text, '');
  assert.is(err.text, 'warning: the report of run x could not be written\n');
});

test.run();
