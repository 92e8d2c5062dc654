#!/usr/bin/env python3
"""A test host's services, run inside a network namespace made by a test.

HTTP on :80 (IPv4 and IPv6), a UDP sink on :9999 and :443 that logs what arrives, and a tiny
DNS server on :53 (UDP and TCP) answering every A query with ANSWER_IP. Everything it sees is
appended to LOG, one line per event, so tests can prove what did and did not arrive.
With CERT and KEY (PEM files) it also serves HTTPS on :443 with the same handler.
Usage: testhost.py LOG ANSWER_IP [CERT KEY]
"""
import socket
import socketserver
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG, ANSWER_IP = sys.argv[1], sys.argv[2]
lock = threading.Lock()


def log(line):
    with lock, open(LOG, "a") as f:
        f.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self, body):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        log(f"http GET {self.path} from {self.client_address[0]}")
        self._reply(f"testhost GET {self.path}\n")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        log(f"http POST {self.path} {len(body)} bytes from {self.client_address[0]}")
        self._reply(f"testhost POST {self.path} {len(body)}\n")

    def log_message(self, *args):
        pass


class Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def udp_sink(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        data, addr = s.recvfrom(65535)
        log(f"udp {port} {len(data)} bytes from {addr[0]}")


def dns_answer(query):
    if len(query) < 12:
        return None
    qid, flags, qd = struct.unpack(">HHH", query[:6])
    i, labels = 12, []
    while i < len(query) and query[i] != 0:
        n = query[i]
        labels.append(query[i + 1:i + 1 + n].decode(errors="replace"))
        i += 1 + n
    qend = i + 5
    name = ".".join(labels)
    qtype = struct.unpack(">H", query[i + 1:i + 3])[0] if i + 3 <= len(query) else 0
    log(f"dns {name} type {qtype}")
    header = struct.pack(">HHHHHH", qid, 0x8180, 1, 1 if qtype == 1 else 0, 0, 0)
    answer = b""
    if qtype == 1:
        answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ANSWER_IP)
    return header + query[12:qend] + answer


def dns_udp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 53))
    while True:
        data, addr = s.recvfrom(65535)
        reply = dns_answer(data)
        if reply:
            s.sendto(reply, addr)


class DnsTcp(socketserver.BaseRequestHandler):
    def handle(self):
        head = self.request.recv(2)
        if len(head) < 2:
            return
        n = struct.unpack(">H", head)[0]
        data = b""
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                return
            data += chunk
        reply = dns_answer(data)
        if reply:
            self.request.sendall(struct.pack(">H", len(reply)) + reply)


class DnsTcpServer(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


for target, args in [(udp_sink, (9999,)), (udp_sink, (443,)), (dns_udp, ())]:
    threading.Thread(target=target, args=args, daemon=True).start()
threading.Thread(target=DnsTcpServer(("::", 53), DnsTcp).serve_forever, daemon=True).start()
if len(sys.argv) > 4:
    import ssl
    tls = Server6(("::", 443), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
    threading.Thread(target=tls.serve_forever, daemon=True).start()
log("ready")
Server6(("::", 80), Handler).serve_forever()
