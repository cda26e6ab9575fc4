"""Plumbing shared by every layer: the compute device and CPU thread policy, JSON-safe atomic file
writes, the output-folder lock, optional progress bars, provenance (versions, commit, CPU kernels)
and hashes of the package's own source files. It computes no maths and imports nothing from the
package.
"""
