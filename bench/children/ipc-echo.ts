/** Bench child: echoes every Node IPC message back; ends when the parent disconnects. */
process.on('message', (m) => {
  process.send!(m);
});
