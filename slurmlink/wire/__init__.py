"""What crosses the wire between slurmlink's processes and their peers, used by both sides.

gojson (Go's JSON rules), interlink (interLink's structs), names (slurmlink's own routes, headers and
annotations), projected (the body of slurmlink's projected-token route), client (the one interLink client:
the vk's, the CLI's and the tests').
"""
