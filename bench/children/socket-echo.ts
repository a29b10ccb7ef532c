/**
 * Bench child: echoes the raw bytes of fd 3 (a socket the parent created with stdio 'pipe') back
 * unchanged, no framing, no codec. Ends when the parent ends its side.
 */
import { Socket } from 'node:net';

const sock = new Socket({ fd: 3, readable: true, writable: true });
sock.pipe(sock);
