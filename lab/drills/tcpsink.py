"""A TCP sink for the failover drills, run in the lab's Internet: it accepts connections on
both families and logs each line it receives with its arrival time, and how each connection
ended (EOF or reset). Standard library only: it runs with the system's python3.

    python3 tcpsink.py PORT LOGFILE
"""

import socket
import sys
import threading
import time


def serve(conn: socket.socket, peer: str, log) -> None:
    buf = b""
    end = "eof"
    try:
        while chunk := conn.recv(4096):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                log(f"{time.time():.6f} {peer} data {line.decode(errors='replace')}")
    except ConnectionResetError:
        end = "reset"
    log(f"{time.time():.6f} {peer} {end}")
    conn.close()


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    lock = threading.Lock()
    out = open(path, "a", buffering=1)  # noqa: SIM115 (open for the life of the process)

    def log(line: str) -> None:
        with lock:
            out.write(line + "\n")

    srv = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    while True:
        conn, addr = srv.accept()
        peer = addr[0].removeprefix("::ffff:")
        log(f"{time.time():.6f} {peer} connect")
        threading.Thread(target=serve, args=(conn, peer, log), daemon=True).start()


if __name__ == "__main__":
    main()
