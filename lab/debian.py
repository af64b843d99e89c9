"""The Debian the lab's containers run, and the mirror name their apt uses. The lab's own
Internet serves that name (lab/roles/internet.py); the image recipe (lab/containers/image.py) and
the light containers' sources.list (lab/files/light/) take it from here."""

RELEASE = "bookworm"
MIRROR_HOST = "deb.debian.org"
# [trusted=yes]: the lab's repository is unsigned (no key, no real Internet in the lab)
SOURCES_LIST = f"deb [trusted=yes] http://{MIRROR_HOST}/debian {RELEASE} main\n"
