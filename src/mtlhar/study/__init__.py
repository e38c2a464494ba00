"""Studies: single-task baselines vs multi-task variants over paired seeds, honestly measured.

A study config names a base run config (data, model, train), the tasks, and the multi-task variants
(task subsets x balancers x encoders). For every seed it trains one single-task model per primary task
(`stl_<task>`) and every variant, all with the same budget; evaluates each run's validation-selected
checkpoint on the test splits; and summarises with intervals, delta_m and Holm-corrected paired tests.
Finished runs are never repeated: run the same command again to resume a study.

```yaml
name: my-study
seeds: 3
test_splits: [test, test_xdomain]
base: {data: {...}, model: {...}, train: {...}}      # a run config without tasks
tasks: [{name: fine}, {name: coarse}, {name: tempo, role: auxiliary}]
variants:
  - {name: mtl_equal, balancer: {name: equal}}      # all tasks by default
  - {name: mtl_fine_tempo, tasks: [fine, tempo]}
quick: {train: {steps: 100}}                        # overrides applied with --quick
protocol: {kind: loso, group: subject}              # optional: group k-fold / leave-one-subject-out
tune: {train.lr: [0.001, 0.003]}                    # optional: the same grid for every group
reference: mtl_equal                                # optional: also test every variant against this one
```

Reference (e.g. balancers against equal weighting): with `reference: VARIANT`, every other multi-task
variant is also compared with that variant on each primary task and test split, with the same paired tests
as against the single-task baselines; those comparisons are Holm-corrected as their own family and listed
in `results.json` `reference_tests` and the report's "Against the reference" table.

Tuning (PROTOCOLS: every baseline tuned with the same budget as any balancer): with `tune`, every group
(single-task baselines, equal weights, every balancer) trains each point of the grid (the cartesian
product of the listed values) for every seed (and fold), named `<group>_s<seed>_t<k>`; each group then
keeps the grid point with the best mean validation score over seeds (per fold), and only those runs are
tested and summarised. `results.json` `tuning` lists every point's validation scores and the choice.

Protocols: without `protocol` (or with `kind: holdout`) the manifest's `split` column is used as it is.
`{kind: kfold, k: 5, group: COLUMN}` and `{kind: loso, group: COLUMN}` re-split the rows of the train, val
and test splits per fold (`mtlhar.data.splits.protocol_folds`): each fold's test split is one fold of groups,
a validation split (about `val`, default 0.15, of the rest) is carved from the remaining groups, and every
run is trained once per fold and seed (`<group>_f<fold>_s<seed>`). Fold manifests are written to
OUT/folds/fold<k>/. Results aggregate over folds: the mean is over fold x seed runs, `std` is over folds
(of the per-fold means over seeds), and intervals resample fold x seed units (and test clips within them).
"""

from .execute import execute_runs, run_one
from .folds import write_folds
from .plan import PlannedRun, plan_runs, runs_by_group
from .run import prepare_manifest, run_study
from .spec import (
    PROTOCOL_KEYS,
    PROTOCOL_KINDS,
    StudySpec,
    check_protocol,
    load_study,
    main_metric,
    tuning_grid,
)
from .summary import DELTA_M_CONVENTION, summarise
from .tuning import select_trials

__all__ = [
    "DELTA_M_CONVENTION",
    "PROTOCOL_KEYS",
    "PROTOCOL_KINDS",
    "PlannedRun",
    "StudySpec",
    "check_protocol",
    "execute_runs",
    "load_study",
    "main_metric",
    "plan_runs",
    "prepare_manifest",
    "run_one",
    "run_study",
    "runs_by_group",
    "select_trials",
    "summarise",
    "tuning_grid",
    "write_folds",
]
