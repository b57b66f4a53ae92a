"""Export a distilled student as a stock transformers model (no custom code), and import such an export back.

    python -m hybrid_distill.export <student dir> <out dir> [--format bamba]
    export_student(student_or_dir, out_dir, format="bamba") -> ExportReport

Formats (FORMATS): `bamba` (transformers' BambaForCausalLM; bamba.py says why the math is the same and what is
refused). `import_student(<export dir>)` rebuilds the student; `student.init_from=<export dir>` uses it.
"""

from .api import (
    FORMATS,
    ExportFormat,
    ExportReport,
    export_student,
    exported_format,
    import_student,
    load_saved_student,
    saved_student_config,
)

__all__ = [
    "FORMATS",
    "ExportFormat",
    "ExportReport",
    "export_student",
    "exported_format",
    "import_student",
    "load_saved_student",
    "saved_student_config",
]
