"""Per-VO site policy: which SLURM account, partitions, QoS, limits and caps a VO's jobs get. One implementation,
used by `slurmlink api` (mode 2, on each pod's job) and `slurmlink proxy` (mode 1, on each job description that
passes through it). Pure: no I/O; the services count jobs in SLURM and hand the counts in."""
