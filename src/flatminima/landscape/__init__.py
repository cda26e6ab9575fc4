"""The geometry of the loss around and along an SGD trajectory: weight recording, trajectory PCA, loss
profiles and power-law fits (``trajectory``), local energy and local entropy of a minimum
(``flatness``), minibatch-noise temperatures and Langevin dynamics (``noise``) and the random-walk
null model (``randomwalk``). It may import from ``core``, ``stats``, ``data``, ``nn`` and
``curvature``, not from its sibling ``quant``.
"""
