"""``kaggle``: a Kaggle code competition. The hand-in is a notebook that Kaggle reruns offline (internet off) on the
hidden test set: the competition's data is at ``/kaggle/input/<competition>``, the datasets attached to the notebook
beside it, and the answer must be ``/kaggle/working/submission.csv``. The notebook runs in Kaggle's own image, whose
torch and timm are not the ones the models were packed with; the pinned wheels travel as a dataset."""

from __future__ import annotations

from builder.platforms.base import Limits, NotebookExport, Platform, Sandbox
from submission.manifest import Entry

PLATFORM = Platform(
    name="kaggle",
    title="Kaggle code competition (a notebook, internet off)",
    entry=Entry(platform="kaggle", mode="folder", input="/kaggle/input/{competition}/test",
                output="/kaggle/working/submission.csv", metadata=None, weights=None, line=None, devices="all"),
    limits=Limits(time_seconds=9 * 3600.0, cpus=4.0, memory="29g", gpus=("T4",), archive_bytes=None, tmpfs_bytes=None),
    sandbox=Sandbox(data="/kaggle/input/{competition}/test", output="/kaggle/working", read_only_root=False,
                    tmpfs=False),
    hand_in="the notebook, pushed with `kaggle kernels push`, then submitted from its page ('Submit to Competition')",
    messages={"timeout": "Notebook Timeout", "exit code": "Notebook Threw Exception",
              "no output": "Submission CSV Not Found", "bad output": "Submission Scoring Error"},
    source="Kaggle/kaggle-api docs/kernels_metadata.md (kernel-metadata.json: id, code_file, kernel_type, "
           "enable_gpu, enable_internet, dataset_sources, competition_sources) and its datasets metadata "
           "(dataset-metadata.json: title, id, licenses; `kaggle datasets create --dir-mode zip`); Kaggle's code "
           "competitions pages (/kaggle/input, /kaggle/working/submission.csv, the rerun on the hidden set, the "
           "errors' names)",
    unverified=("the time limit: the competition's (9 h is typical); pass --time-limit",
                "the accelerator: 'GPU T4 x2' assumed; a P100 (sm_60) cannot run the pinned CUDA 13 torch: pass "
                "--gpu-arch sm_60 to have pack refuse it, or --devices cpu",
                "the kernel's Python: 3.11 (the wheels are for it); the notebook says when its kernel's differs, and "
                "the export's check decides",
                "where attached datasets appear: under /kaggle/input, which the notebook searches four folders deep"),
    notebook=NotebookExport(python="3.11", input_root="/kaggle/input", working="/kaggle/working"),
)
