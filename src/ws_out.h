/* ws_out.h: the bytes a server has for one WebSocket client, framed
 * (RFC 6455 section 5.2: a server's frames are unmasked, FIN set, a 2, 4
 * or 10 byte header) and sent with as few system calls as the socket
 * takes: everything queued goes out in one send() when the socket has
 * room; what it does not take stays, in order, for the next flush (after
 * EPOLLOUT). Frames are appended whole, so the stream is always a sequence
 * of complete frames, whatever mix of data and control frames it holds.
 * One thread owns a ws_out; it holds no lock. */
#ifndef DS_WS_OUT_H
#define DS_WS_OUT_H

#include <stddef.h>
#include <stdint.h>

/* The longest frame header: 2 bytes and a 64-bit length. */
enum { WS_FRAME_HEAD_MAX = 10 };

/* Opcodes (RFC 6455 section 5.2). */
enum { WS_OP_TEXT = 0x1, WS_OP_CLOSE = 0x8, WS_OP_PING = 0x9, WS_OP_PONG = 0xa };

/* Writes the header of a final, unmasked frame of the opcode with a
 * payload of len bytes into h; returns its length (2, 4 or 10). Pure. */
size_t ws_frame_head(uint8_t h[WS_FRAME_HEAD_MAX], int opcode, uint64_t len);

typedef struct ws_out {
    char *data;
    size_t off, len, alloc; /* data[off, len) is still to send */
} ws_out;

/* A ws_out is ready when zeroed; ws_out_free() gives its memory back. */
void ws_out_free(ws_out *o);
/* Appends one text frame whose payload is the n parts one after another
 * (a message built from shared pieces needs no copy of its own first). */
typedef struct ws_part {
    const char *p;
    size_t len;
} ws_part;
void ws_out_text(ws_out *o, const ws_part *parts, size_t n);
/* Appends bytes that are already frames (or whole pieces of them, in
 * order: a framing library's output). */
void ws_out_raw(ws_out *o, const void *p, size_t n);
/* Bytes still to send. */
size_t ws_out_pending(const ws_out *o);

/* Sends what is pending on the non-blocking socket fd: 0 when all of it
 * went, 1 when the socket is full and some is left (wait for EPOLLOUT and
 * flush again), or -errno when the connection failed. A large buffer is
 * given back once it is empty, so an idle connection holds little. */
int ws_out_flush(ws_out *o, int fd);

#endif
