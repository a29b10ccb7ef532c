/**
 * The cgroup containment tier (cgroup v2). Each task gets a cgroup of its own, under a
 * `warden` folder beside the supervisor, and the child is forked straight into it: the supervisor
 * moves itself into the task's cgroup, calls spawn() (fork inherits the cgroup), and moves back,
 * all in one synchronous stretch. So there is no window in which an early fork of the task lands
 * outside, and no helper process or exec is needed.
 */
import { accessSync, closeSync, constants, mkdirSync, openSync, readFileSync, readdirSync, rmdirSync, writeFileSync, writeSync } from 'node:fs';
import { isLinux, readProcText } from './proc.js';

export class TaskCgroup {
  removed = false;
  /** cgroup.kill was written: never reused for another task. */
  killed = false;
  constructor(readonly path: string) {}

  /** Pids in the cgroup (zombies excluded by the kernel once they have exited). */
  procs(): number[] {
    const text = readProcText(`${this.path}/cgroup.procs`);
    const out: number[] = [];
    if (text !== undefined) for (const line of text.split('\n')) if (line) out.push(Number(line));
    return out;
  }

  /** False once no live process is left in it. */
  populated(): boolean {
    return readProcText(`${this.path}/cgroup.events`)?.includes('populated 1') ?? false;
  }

  /** Whether the kernel offers `cgroup.kill` (Linux >= 5.14). */
  canKill(): boolean {
    try {
      accessSync(`${this.path}/cgroup.kill`, constants.W_OK);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Precondition: the caller (the signaller's owner) checked that the supervisor is not in this
   * cgroup. Returns false when cgroup.kill is missing or fails.
   */
  writeKill(): boolean {
    this.killed = true;
    try {
      writeFileSync(`${this.path}/cgroup.kill`, '1');
      return true;
    } catch {
      return false;
    }
  }

  /** Removes the (empty) cgroup. Returns false while it still has members (EBUSY). */
  remove(): boolean {
    if (this.removed) return true;
    try {
      rmdirSync(this.path);
      this.removed = true;
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.removed = true;
        return true;
      }
      return false;
    }
  }
}

const selfPid = String(process.pid);

/** The number in the next task cgroup's name (`<pid>.<n>`): unique in this process. */
let cgroupSeq = 0;
/** Names tried before a task goes without a cgroup. */
const MAX_CREATE_ATTEMPTS = 16;

/** Empty task cgroups kept for reuse (a mkdir and an rmdir saved per task). */
const MAX_SPARE_CGROUPS = 16;

export class CgroupTier {
  private broken = false;
  private readonly spare: TaskCgroup[] = [];
  /** The supervisor's own cgroup.procs, opened on the first spawn, closed by `drain()`. */
  private homeFd: number | undefined;

  private constructor(
    /** Absolute path of the supervisor's own cgroup (where it returns after each spawn). */
    readonly homePath: string,
    /** Folder under which task cgroups are created. */
    readonly basePath: string,
  ) {}

  /**
   * Finds a writable cgroup v2 hierarchy (root, or a delegated subtree) and prepares the base
   * folder. Returns undefined when the tier is not available; the caller falls back to
   * group + cookie.
   */
  static detect(): CgroupTier | undefined {
    if (!isLinux) return undefined;
    try {
      const mount = findCgroup2Mount();
      if (!mount) return undefined;
      const own = readFileSync('/proc/self/cgroup', 'latin1')
        .split('\n')
        .find((l) => l.startsWith('0::'));
      if (!own) return undefined;
      const rel = own.slice(3).replace(/\/$/, '');
      const home = `${mount}${rel}`;
      const base = `${home}/warden`;
      mkdirSync(base, { recursive: true });
      accessSync(base, constants.W_OK);
      accessSync(`${home}/cgroup.procs`, constants.W_OK);
      const tier = new CgroupTier(home, base);
      tier.sweepStale();
      return tier;
    } catch {
      return undefined;
    }
  }

  get usable(): boolean {
    return !this.broken;
  }

  /**
   * A cgroup for a new task: an empty one left by an earlier task of this supervisor, or a new
   * folder `<supervisor pid>.<n>` (the pid lets a later supervisor sweep what a dead one left).
   */
  create(): TaskCgroup | undefined {
    if (this.broken) return undefined;
    for (let cg = this.spare.pop(); cg; cg = this.spare.pop()) {
      if (!cg.populated() && !cg.removed) return cg;
      cg.remove();
    }
    // Numbered process-wide, not per supervisor: a process may hold several supervisors one
    // after the other, and a cgroup of an earlier one can still be there (kept for a retried
    // removal). A name taken anyway (EEXIST) moves on to the next number.
    for (let attempt = 0; attempt < MAX_CREATE_ATTEMPTS; attempt++) {
      const path = `${this.basePath}/${process.pid}.${++cgroupSeq}`;
      try {
        mkdirSync(path);
        return new TaskCgroup(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return undefined;
      }
    }
    return undefined;
  }

  /**
   * Takes back a settled task's cgroup: kept for the next task when it is empty and was never
   * killed (cgroup.kill), else removed. Returns false when it could not be removed (still has
   * members): the caller retries later.
   */
  recycle(cg: TaskCgroup): boolean {
    if (!cg.killed && !this.broken && this.spare.length < MAX_SPARE_CGROUPS && !cg.populated()) {
      this.spare.push(cg);
      return true;
    }
    return cg.remove();
  }

  /** Removes the spare cgroups and closes the fd of the way home (supervisor close). */
  drain(): void {
    for (const cg of this.spare.splice(0)) cg.remove();
    if (this.homeFd !== undefined) {
      closeSync(this.homeFd);
      this.homeFd = undefined;
    }
  }

  /**
   * Runs `fork` (a synchronous spawn) with the supervisor inside `cg`, so the child starts there.
   * If moving back home fails, the tier is marked broken and never used again, and the task's
   * cgroup is never killed through cgroup.kill (the supervisor might be in it).
   */
  spawnInside<T>(cg: TaskCgroup, fork: () => T): T {
    writeFileSync(`${cg.path}/cgroup.procs`, selfPid);
    try {
      return fork();
    } finally {
      try {
        // Through an fd kept open for the way home (one write instead of open, write, close).
        this.homeFd ??= openSync(`${this.homePath}/cgroup.procs`, 'w');
        writeSync(this.homeFd, selfPid);
      } catch {
        this.broken = true;
      }
    }
  }

  /** True when the supervisor itself is a member of `cg` (then it must never be killed). */
  containsSelf(cg: TaskCgroup): boolean {
    return this.broken || cg.procs().includes(process.pid);
  }

  /** Removes empty task cgroups left by supervisors that died without cleaning up. */
  private sweepStale(): void {
    for (const name of readdirSync(this.basePath)) {
      const owner = Number(name.split('.')[0]);
      if (!Number.isInteger(owner) || owner === process.pid) continue;
      let alive = true;
      try {
        readFileSync(`/proc/${owner}/stat`);
      } catch {
        alive = false;
      }
      if (alive) continue;
      try {
        rmdirSync(`${this.basePath}/${name}`);
      } catch {
        // Still populated or already gone: leave it.
      }
    }
  }
}

function findCgroup2Mount(): string | undefined {
  const info = readFileSync('/proc/self/mountinfo', 'latin1');
  for (const line of info.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(' ')[0];
    if (fstype === 'cgroup2') return line.split(' ')[4];
  }
  return undefined;
}
