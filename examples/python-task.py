#!/usr/bin/env python3
"""A warden task in Python with the standard library only (protocol: docs/protocol.md).

Reads the StartupDetails frame from the comms fd, asks for the variable `greeting`, prints its
value, writes one JSON log record to the log fd, and exits 0 (1 if the request fails).
"""
import json
import os
import struct
import sys
from datetime import datetime, timezone

# Minimal msgpack: nil, bool, int, float, str, bin, array, map.
def pack(v):
    if v is None: return b'\xc0'
    if v is True or v is False: return b'\xc3' if v else b'\xc2'
    if isinstance(v, int):
        if -32 <= v < 128: return struct.pack('>b' if v < 0 else '>B', v)
        return b'\xd3' + struct.pack('>q', v) if v < 2**63 else b'\xcf' + struct.pack('>Q', v)
    if isinstance(v, float): return b'\xcb' + struct.pack('>d', v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b'\xdb' + struct.pack('>I', len(b))) + b
    if isinstance(v, (bytes, bytearray)): return b'\xc6' + struct.pack('>I', len(v)) + bytes(v)
    if isinstance(v, (list, tuple)):
        return b'\xdd' + struct.pack('>I', len(v)) + b''.join(pack(x) for x in v)
    if isinstance(v, dict):
        return b'\xdf' + struct.pack('>I', len(v)) + b''.join(pack(k) + pack(x) for k, x in v.items())
    raise TypeError(f'cannot pack {type(v).__name__}')

FIXED = {0xcc: '>B', 0xcd: '>H', 0xce: '>I', 0xcf: '>Q', 0xd0: '>b', 0xd1: '>h', 0xd2: '>i',
         0xd3: '>q', 0xca: '>f', 0xcb: '>d'}
SIZED = {0xd9: ('>B', 'str'), 0xda: ('>H', 'str'), 0xdb: ('>I', 'str'), 0xc4: ('>B', 'bin'),
         0xc5: ('>H', 'bin'), 0xc6: ('>I', 'bin'), 0xdc: ('>H', 'arr'), 0xdd: ('>I', 'arr'),
         0xde: ('>H', 'map'), 0xdf: ('>I', 'map')}

def read(b, i):
    t = b[i]; i += 1
    if t < 0x80: return t, i
    if t >= 0xe0: return t - 0x100, i
    if t in (0xc0, 0xc2, 0xc3): return {0xc0: None, 0xc2: False, 0xc3: True}[t], i
    if t in FIXED: return struct.unpack_from(FIXED[t], b, i)[0], i + struct.calcsize(FIXED[t])
    if t in SIZED:
        fmt, kind = SIZED[t]
        n, i = struct.unpack_from(fmt, b, i)[0], i + struct.calcsize(fmt)
    elif t <= 0x8f: kind, n = 'map', t & 0x0f
    elif t <= 0x9f: kind, n = 'arr', t & 0x0f
    elif t <= 0xbf: kind, n = 'str', t & 0x1f
    else: raise ValueError(f'unsupported msgpack type 0x{t:02x}')
    if kind in ('str', 'bin'):
        return (b[i:i + n].decode() if kind == 'str' else bytes(b[i:i + n])), i + n
    out = {} if kind == 'map' else []
    for _ in range(n):
        if kind == 'map':
            k, i = read(b, i); out[k], i = read(b, i)
        else:
            x, i = read(b, i); out.append(x)
    return out, i

def unpack(b):
    value, end = read(b, 0)
    if end != len(b): raise ValueError('trailing bytes after the msgpack value')
    return value

# Frames: u32 BE length (id + body) | u32 BE request id | msgpack body.
def read_exact(fd, n):
    buf = b''
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk: raise EOFError('warden closed the comms channel')
        buf += chunk
    return buf

def read_frame(fd):
    length, frame_id = struct.unpack('>II', read_exact(fd, 8))
    return frame_id, unpack(read_exact(fd, length - 4))

def write_frame(fd, frame_id, body):
    data = pack(body)
    frame = struct.pack('>II', len(data) + 4, frame_id) + data
    while frame: frame = frame[os.write(fd, frame):]

def main():
    if 'WARDEN_COMMS_FD' not in os.environ:
        sys.exit('WARDEN_COMMS_FD is not set: this task is not running under warden (run it with `warden run -- python3 examples/python-task.py`)')
    comms = int(os.environ['WARDEN_COMMS_FD'])
    frame_id, startup = read_frame(comms)  # nothing runs before the startup frame
    assert frame_id == 0 and startup.get('type') == 'StartupDetails', startup
    write_frame(comms, 1, {'type': 'GetVariable', 'key': 'greeting'})
    while True:
        frame_id, response = read_frame(comms)
        if frame_id == 1: break
    os.close(comms)  # done with comms: warden sees EOF now
    if 'error' in response:
        err = response['error']
        sys.exit(f"GetVariable failed: {err['code']}: {err['message']}")
    value = response['ok']['value']
    print(value, flush=True)
    record = {'timestamp': datetime.now(timezone.utc).isoformat(), 'level': 'info', 'logger': 'task',
              'event': 'greeted', 'task': startup.get('taskId'), 'value': value}
    os.write(int(os.environ.get('WARDEN_LOG_FD', '2')), (json.dumps(record) + '\n').encode())

if __name__ == '__main__':
    main()
