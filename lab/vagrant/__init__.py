"""The Vagrant side of the lab: the box (box.py), what the Vagrantfile reads (spec.py) and the
host's L2 plumbing for the VMs (host/)."""
