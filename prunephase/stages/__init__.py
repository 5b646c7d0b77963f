"""The pipeline's five stages, each a module with `run(sweep)`, in order:

  train    dense family (one program per dense group; epoch checkpoints = the epoch family)
  prune    masks for every (temperature, dense seed, density)
  retrain  masked population (dense seeds x densities x retrain seeds) per temperature
  measure  test error, LMC curves and CKA for every retrain-seed pair
  report   results.csv, cells.csv, regimes, figures, findings, summary

Every stage reads only what earlier stages wrote (`artifacts.Store`), skips finished artifacts
and writes its own atomically, so a killed run resumes where it stopped with the same numbers.
The order and the table of run functions are `prunephase.sweep.STAGES` and `RUN`: importing a
stage's helper module (e.g. `stages.context`) imports no stage.
"""
