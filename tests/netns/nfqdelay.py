#!/usr/bin/python3
"""nfqdelay.py QUEUE_NUM DELAY_MS -- delay packets queued by iptables NFQUEUE.

What it is for: the plasm NAT lab (tests/netns/run.sh) wants ~50 ms of delay on
the routers' outside links, and `tc netem` does not exist on these kernels
(CONFIG_NET_SCH_NETEM is off). NFQUEUE is there, so a router namespace sends
the packets to a queue and this program, run inside the same namespace, gives
each one an NF_ACCEPT verdict DELAY_MS after it arrived. Packets are held
concurrently (a FIFO of (release_time, packet_id)), so throughput is not
limited to one packet per delay.

Use it from a router namespace, for example:

    iptables -t mangle -A POSTROUTING -o wan -j NFQUEUE --queue-num 7 --queue-bypass
    /usr/bin/python3 tests/netns/nfqdelay.py 7 50 &

(--queue-bypass lets packets through undelayed while no delayer is bound.)

Python 3 stdlib only: it speaks raw nfnetlink (NETLINK_NETFILTER), no
libnetfilter_queue. Values below are from linux/netfilter/nfnetlink.h and
nfnetlink_queue.h. The queue is set to copy metadata only, holds up to 4096
packets and, where the kernel supports it, fails open (a packet that finds the
queue full is accepted, not dropped). SIGTERM/SIGINT accept every packet still
held, unbind and exit 0.
"""

import collections
import errno
import math
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4

NFNETLINK_V0 = 0
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2

NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_FAIL_OPEN = 1

NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_CFG_CMD_PF_BIND = 3
NFQNL_CFG_CMD_PF_UNBIND = 4

NFQNL_COPY_META = 1
NF_ACCEPT = 1

QUEUE_MAXLEN = 4096
RCVBUF = 16 * 1024 * 1024
VERDICTS_PER_SEND = 64

NLMSGHDR = struct.Struct("=IHHII")   # len, type, flags, seq, pid
NFGENMSG = struct.Struct("!BBH")     # family, version, res_id (be16)
NLATTR = struct.Struct("=HH")        # len, type


def log(msg):
    print("nfqdelay: " + msg, file=sys.stderr, flush=True)


def attr(atype, payload):
    n = NLATTR.size + len(payload)
    return NLATTR.pack(n, atype) + payload + b"\0" * ((-n) % 4)


class Queue:
    def __init__(self, num):
        self.num = num
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE (root)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.bind((0, 0))
        self.buf = bytearray(1 << 16)

    def msg(self, mtype, family, attrs, flags=NLM_F_REQUEST):
        self.seq += 1
        body = NFGENMSG.pack(family, NFNETLINK_V0, self.num) + b"".join(attrs)
        return NLMSGHDR.pack(NLMSGHDR.size + len(body),
                             (NFNL_SUBSYS_QUEUE << 8) | mtype, flags, self.seq, 0) + body

    def config(self, attrs, family=socket.AF_UNSPEC):
        """Send one NFQNL_MSG_CONFIG with an ACK request; return 0 or -errno.
        Packet messages that arrive meanwhile are handed back for queueing."""
        m = self.msg(NFQNL_MSG_CONFIG, family, attrs, NLM_F_REQUEST | NLM_F_ACK)
        seq = self.seq
        self.sock.send(m)
        stray = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], 0.5)
            if not r:
                continue
            try:
                n = self.sock.recv_into(self.buf)
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    continue
                raise
            for mtype, mseq, data, off, end in self.parse(n):
                if mtype == NLMSG_ERROR and mseq == seq:
                    return struct.unpack_from("=i", data, off)[0], stray
                if mtype == (NFQNL_MSG_PACKET | (NFNL_SUBSYS_QUEUE << 8)):
                    stray.append(self.packet_id(data, off, end))
        raise TimeoutError("no answer from nfnetlink_queue")

    def parse(self, n):
        data = self.buf
        off = 0
        while off + NLMSGHDR.size <= n:
            mlen, mtype, _flags, mseq, _pid = NLMSGHDR.unpack_from(data, off)
            if mlen < NLMSGHDR.size or off + mlen > n:
                break
            yield mtype, mseq, data, off + NLMSGHDR.size, off + mlen
            off += (mlen + 3) & ~3

    @staticmethod
    def packet_id(data, off, end):
        off += NFGENMSG.size
        while off + NLATTR.size <= end:
            alen, atype = NLATTR.unpack_from(data, off)
            if alen < NLATTR.size:
                break
            if (atype & 0x3FFF) == NFQA_PACKET_HDR:
                return struct.unpack_from("!I", data, off + NLATTR.size)[0]
            off += (alen + 3) & ~3
        return None

    def setup(self):
        held = []
        # Pre-3.8 kernels need a per-family handler bind; newer ones ignore it.
        for pf in (socket.AF_INET, socket.AF_INET6):
            for cmd in (NFQNL_CFG_CMD_PF_UNBIND, NFQNL_CFG_CMD_PF_BIND):
                held += self.config([attr(NFQA_CFG_CMD, struct.pack("!BBH", cmd, 0, pf))], pf)[1]
        err, s = self.config([attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0))])
        held += s
        if err:
            raise OSError(-err, "bind queue %d: %s" % (self.num, os.strerror(-err)))
        err, s = self.config([attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))])
        held += s
        if err:
            raise OSError(-err, "set copy mode: " + os.strerror(-err))
        err, s = self.config([attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN))])
        held += s
        if err:
            log("queue maxlen not set: " + os.strerror(-err))
        err, s = self.config([attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)),
                              attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))])
        held += s
        if err:
            log("fail-open not supported (%s); overflow drops packets" % os.strerror(-err))
        return [p for p in held if p is not None]

    def accept(self, ids):
        """Send NF_ACCEPT verdicts, several per datagram."""
        for i in range(0, len(ids), VERDICTS_PER_SEND):
            chunk = b"".join(
                self.msg(NFQNL_MSG_VERDICT, socket.AF_UNSPEC,
                         [attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid))])
                for pid in ids[i:i + VERDICTS_PER_SEND])
            while True:
                try:
                    self.sock.send(chunk)
                    break
                except InterruptedError:
                    continue
                except OSError as e:
                    if e.errno in (errno.ENOBUFS, errno.EAGAIN):
                        time.sleep(0.001)
                        continue
                    raise

    def unbind(self):
        try:
            self.sock.send(self.msg(NFQNL_MSG_CONFIG, socket.AF_UNSPEC,
                                    [attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_UNBIND, 0, 0))]))
        except OSError:
            pass


def main(argv):
    if len(argv) != 3:
        print("usage: nfqdelay.py QUEUE_NUM DELAY_MS", file=sys.stderr)
        return 2
    try:
        num = int(argv[1])
        delay = float(argv[2]) / 1000.0
        if not 0 <= num <= 65535 or delay < 0:
            raise ValueError
    except ValueError:
        print("nfqdelay: QUEUE_NUM must be 0..65535 and DELAY_MS >= 0", file=sys.stderr)
        return 2

    # Signals wake the poll through a pipe; the loop then exits cleanly.
    stop = []
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)

    def on_signal(signum, _frame):
        stop.append(signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    pending = collections.deque()   # (release_time, packet_id), release times ascending
    try:
        q = Queue(num)
        held = q.setup()
    except OSError as e:   # EPERM on bind: another process holds this queue number
        log("cannot set up queue %d: %s" % (num, e))
        return 1
    now = time.monotonic()
    for pid in held:
        pending.append((now + delay, pid))
    q.sock.setblocking(False)
    log("queue %d bound, delay %g ms" % (num, delay * 1000))

    poller = select.poll()
    poller.register(q.sock.fileno(), select.POLLIN)
    poller.register(rfd, select.POLLIN)
    pkt_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET
    overruns = 0

    def drain():
        """Read everything the kernel has queued for us."""
        nonlocal overruns
        while True:
            try:
                n = q.sock.recv_into(q.buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:   # socket overran: those packets failed open (or dropped)
                    overruns += 1
                    continue
                raise
            t = time.monotonic() + delay
            for mtype, _seq, data, off, end in q.parse(n):
                if mtype == pkt_type:
                    pid = q.packet_id(data, off, end)
                    if pid is not None:
                        pending.append((t, pid))
                elif mtype == NLMSG_ERROR:
                    e = struct.unpack_from("=i", data, off)[0]
                    if e:
                        log("kernel error: " + os.strerror(-e))

    try:
        while not stop:
            drain()
            # Release everything that is due.
            now = time.monotonic()
            due = []
            while pending and pending[0][0] <= now:
                due.append(pending.popleft()[1])
            if due:
                q.accept(due)
            timeout = -1 if not pending else max(0, math.ceil((pending[0][0] - time.monotonic()) * 1000))
            poller.poll(timeout)
            try:
                os.read(rfd, 512)
            except BlockingIOError:
                pass
    finally:
        # Let through whatever is still held rather than have the kernel drop it.
        try:
            drain()
        except OSError:
            pass
        if pending:
            q.accept([pid for _t, pid in pending])
        q.unbind()
        q.sock.close()
        if overruns:
            log("socket overran %d times" % overruns)
        log("exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
