'use strict';

// TaskQueue: the seed's fix for "one process per request". At most maxConcurrency worker
// processes run at once; every other request waits in an (unbounded) array until one finishes.
// maxConcurrency 0 means no bound: every task starts its process at once, the seed's "before"
// (one process per request), through the same spawning code.
//
//   const pythonQueue = new TaskQueue(4, { command: '/path/to/worker' });
//   const output = await pythonQueue.execute(['--data-dir', dir, 'schedules'], '{}');

const { spawn } = require('child_process');

class TaskQueue {
  constructor(maxConcurrency = 4, options = {}) {
    this.maxConcurrency = maxConcurrency; // Max processes at once (0: no limit)
    this.activeCount = 0;                 // Currently running
    this.queue = [];                      // Pending requests
    this.command = options.command || 'python3';

    this.stats = {
      totalProcessed: 0,
      totalQueued: 0,
      totalErrors: 0,
      peakActive: 0,
      peakQueueSize: 0,
    };
  }

  // Runs the command with `args` (and `input` on stdin) now if fewer than maxConcurrency
  // processes are running, otherwise queues it. Resolves with the process's stdout; rejects
  // with an Error carrying exitCode, stdout and stderr when the process fails.
  execute(args, input = '') {
    return new Promise((resolve, reject) => {
      const task = { args, input, resolve, reject };

      if (this._hasFreeSlot()) {
        this._run(task);
      } else {
        this.queue.push(task);
        this.stats.totalQueued++;
        if (this.queue.length > this.stats.peakQueueSize) {
          this.stats.peakQueueSize = this.queue.length;
        }
        if (this.queue.length % 10 === 5) {
          console.log(`[TaskQueue] Queue size: ${this.queue.length}, Active: ${this.activeCount}`);
        }
      }
    });
  }

  _run(task) {
    this.activeCount++;
    if (this.activeCount > this.stats.peakActive) {
      this.stats.peakActive = this.activeCount;
    }

    let finished = false;
    const finish = (error, output) => {
      if (finished) return;
      finished = true;
      this.activeCount--;
      this.stats.totalProcessed++;
      if (error) {
        this.stats.totalErrors++;
        task.reject(error);
      } else {
        task.resolve(output);
      }
      this._next();
    };

    let stdout = '';
    let stderr = '';
    let child;
    try {
      child = spawn(this.command, task.args);
    } catch (error) {
      finish(error);
      return;
    }

    child.stdout.on('data', (data) => { stdout += data.toString(); });
    child.stderr.on('data', (data) => { stderr += data.toString(); });

    child.on('error', (error) => finish(error));
    child.on('close', (code, signal) => {
      if (code === 0) {
        finish(null, stdout);
      } else {
        const ending = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        const error = new Error(stderr.trim() || `Process ${ending}`);
        error.exitCode = code;
        error.signal = signal;
        error.stdout = stdout;
        error.stderr = stderr;
        finish(error);
      }
    });

    // The worker may exit before reading all of its input (EPIPE); the exit code tells.
    child.stdin.on('error', () => {});
    child.stdin.end(task.input);
  }

  _hasFreeSlot() {
    return this.maxConcurrency === 0 || this.activeCount < this.maxConcurrency;
  }

  _next() {
    if (this.queue.length > 0 && this._hasFreeSlot()) {
      this._run(this.queue.shift());
    }
  }

  getStats() {
    return {
      totalProcessed: this.stats.totalProcessed,
      totalQueued: this.stats.totalQueued,
      totalErrors: this.stats.totalErrors,
      peakActive: this.stats.peakActive,
      peakQueueSize: this.stats.peakQueueSize,
      activeProcesses: this.activeCount,
      queuedTasks: this.queue.length,
      maxConcurrency: this.maxConcurrency,
      utilizationPercent: this.maxConcurrency === 0
        ? 0
        : Math.round((this.activeCount / this.maxConcurrency) * 100),
    };
  }

  // Rejects every queued (not yet running) task with `reason`; running ones finish.
  // Returns how many were cleared.
  clearQueue(reason = 'Queue cleared') {
    const cleared = this.queue.length;
    const pending = this.queue;
    this.queue = [];
    for (const task of pending) {
      task.reject(new Error(reason));
    }
    return cleared;
  }
}

module.exports = TaskQueue;
