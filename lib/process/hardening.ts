import { constants } from 'node:os';
import { WardenError } from '../errors.js';
import { nativeBinding } from './native-binding.js';

/**
 * Marks this process non-dumpable (prctl PR_SET_DUMPABLE 0), so that tasks running as the same
 * user cannot read its memory or `/proc/<pid>/environ` (where a token passed in the environment
 * sits), nor ptrace it. It lasts for the life of the process and also turns off its core dumps;
 * children are dumpable again once they exec. Throws WardenError `ERR_UNSUPPORTED` when the
 * native addon is not built here, or when the kernel refuses.
 */
export function makeNonDumpable(): void {
  if (!nativeBinding) {
    throw new WardenError('ERR_UNSUPPORTED', 'cannot mark the supervisor non-dumpable: warden\'s native addon is not built here (npm install builds it with node-gyp and a C compiler).');
  }
  const rc = nativeBinding.setDumpable(false);
  if (rc !== 0) {
    const name = Object.entries(constants.errno).find(([, n]) => n === -rc)?.[0] ?? `errno ${-rc}`;
    throw new WardenError('ERR_UNSUPPORTED', `cannot mark the supervisor non-dumpable: prctl(PR_SET_DUMPABLE) failed with ${name}.`);
  }
}
