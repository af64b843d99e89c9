"""Does KVM really run a guest here? Run one, and see it get as far as it must.

/dev/kvm existing proves little: libvirt lists domain type 'kvm' wherever it does, and on
this machine it belongs to kvm_pvm, which runs real-mode code and even SeaBIOS, but not a
Linux kernel (`-cpu host` aborts on an MSR, the default CPU hangs). So, in two steps, each
in a child process with a timeout (a broken KVM may hang):
1. /dev/kvm runs four bytes of real-mode code (`out 0x10, al; hlt`): cheap, no QEMU;
2. QEMU with KVM boots the box's kernel as the VMs will (`-cpu host`) to its first panic
   ("no root"): protected mode, paging, long mode, timers, MSRs.
The answer is cached per boot of the host in /var/cache/vxlab (a probe takes seconds, and
every `vagrant` command asks).

    python -m lab.vagrant.kvm [KERNEL]     # prints "kvm" or "qemu" (exit 0 either way)
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import mmap
import os
import struct
import subprocess
import sys
from pathlib import Path

CACHE = Path("/var/cache/vxlab/kvm-probe.json")

# ioctl numbers of <linux/kvm.h> (x86-64)
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_RUN = 0xAE80
KVM_GET_REGS, KVM_SET_REGS = 0x8090AE81, 0x4090AE82
KVM_GET_SREGS, KVM_SET_SREGS = 0x8138AE83, 0x4138AE84
KVM_EXIT_IO = 2
PORT, BYTE, CODE_AT = 0x10, 0x42, 0x1000
CODE = bytes([0xE6, PORT, 0xF4])  # out PORT, al; hlt


def _run_guest() -> bool:
    """In this process: run the tiny guest; True if it did exactly what it should."""
    kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    if fcntl.ioctl(kvm, KVM_GET_API_VERSION) != 12:
        return False
    vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
    mem = mmap.mmap(-1, 0x10000)
    mem[CODE_AT:CODE_AT + len(CODE)] = CODE
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, struct.pack("IIQQQ", 0, 0, 0, len(mem), addr))
    vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
    size = fcntl.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE)
    run = mmap.mmap(vcpu, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    sregs = bytearray(312)
    fcntl.ioctl(vcpu, KVM_GET_SREGS, sregs)
    struct.pack_into("Q", sregs, 0, 0)  # cs.base = 0
    struct.pack_into("H", sregs, 12, 0)  # cs.selector = 0: real mode from address 0
    fcntl.ioctl(vcpu, KVM_SET_SREGS, bytes(sregs))
    regs = [0] * 18
    regs[0], regs[16], regs[17] = BYTE, CODE_AT, 0x2  # rax, rip, rflags
    fcntl.ioctl(vcpu, KVM_SET_REGS, struct.pack("18Q", *regs))
    fcntl.ioctl(vcpu, KVM_RUN, 0)
    exit_reason = struct.unpack_from("I", run, 8)[0]
    if exit_reason != KVM_EXIT_IO:
        return False
    _direction, _size, port, _count, offset = struct.unpack_from("BBHIQ", run, 32)
    return port == PORT and run[offset] == BYTE


def runs_code(timeout: float = 10) -> bool:
    """Step 1: /dev/kvm runs real-mode code (False if absent, failing or hanging)."""
    if not os.path.exists("/dev/kvm"):
        return False
    try:
        r = subprocess.run([sys.executable, "-c", "import lab.vagrant.kvm as k; k._child()"],
                           capture_output=True, text=True, timeout=timeout,
                           cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0 and r.stdout.strip() == "ok"


def _child() -> None:
    try:
        print("ok" if _run_guest() else "wrong")
    except OSError as e:
        print(f"error: {e}")


def boots_linux(kernel: Path, timeout: float = 20) -> bool:
    """Step 2: QEMU with KVM boots `kernel` up to its panic for want of a root file system."""
    argv = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1 root=/dev/vxlab-none"]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False
    return "Kernel panic" in r.stdout or "VFS: Unable to mount root" in r.stdout


def works(kernel: Path | None) -> bool:
    """Whether KVM runs the lab's VMs here. Without a kernel to boot (no box yet) the answer
    is no: step 1 alone passes here, where KVM cannot run the VMs, and TCG always works."""
    return kernel is not None and runs_code() and boots_linux(kernel)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def driver(kernel: Path | None = None, cache: Path | None = CACHE) -> str:
    """libvirt's domain type for the lab's VMs: "kvm" where KVM runs them, else "qemu" (TCG).

    VXLAB_LIBVIRT_DRIVER=kvm|qemu overrides the probe."""
    forced = os.environ.get("VXLAB_LIBVIRT_DRIVER")
    if forced in ("kvm", "qemu"):
        return forced
    if cache is None or kernel is None:
        return "kvm" if works(kernel) else "qemu"
    key = {"boot_id": _boot_id(), "kernel": str(kernel) if kernel else None}
    try:
        cached = json.loads(cache.read_text())
        if cached["key"] == key:
            return cached["driver"]
    except (OSError, ValueError, KeyError):
        pass
    answer = "kvm" if works(kernel) else "qemu"
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "driver": answer}) + "\n")
        tmp.replace(cache)
    except OSError:
        pass  # not root: probe again next time
    return answer


if __name__ == "__main__":
    print(driver(Path(sys.argv[1]) if len(sys.argv) > 1 else None, cache=None))
