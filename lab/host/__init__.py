"""This machine's primitives, for every part of vxlab that acts on it: commands, processes
by pid, waiting with a deadline. Nothing here knows about labs."""
