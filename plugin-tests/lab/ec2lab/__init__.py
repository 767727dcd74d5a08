"""The EC2 lab: moto + EBS on loop devices + IMDS, driven by labctl (see ../README.md)."""
