"""Well-formedness check of android_demo, which cannot be built here (no Android SDK).

Parses every .xml file (manifest, resources) and checks that the Gradle files name the artifacts
and modules the app needs. Prints each problem and exits 1 if there is any. Standard library only.
"""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SKIPPED_DIRS = {".tools", "build", ".gradle", ".idea"}

REQUIRED = {
    "gradle/libs.versions.toml": [
        '"com.google.ai.edge.litert:litert"',
        '"com.google.ai.edge.litert:litert-gpu"',
        '"androidx.camera:camera-core"',
        '"androidx.camera:camera-camera2"',
        '"androidx.camera:camera-lifecycle"',
        '"androidx.camera:camera-view"',
        '"com.android.application"',
        '"org.jetbrains.kotlin.android"',
        '"org.jetbrains.kotlin.jvm"',
    ],
    "settings.gradle.kts": ['include(":app", ":core")', "google()"],
    "app/build.gradle.kts": [
        'implementation(project(":core"))',
        "implementation(libs.litert)",
        "implementation(libs.litert.gpu)",
        "implementation(libs.androidx.camera.core)",
        "implementation(libs.androidx.camera.camera2)",
        "implementation(libs.androidx.camera.lifecycle)",
        "implementation(libs.androidx.camera.view)",
    ],
    "core/build.gradle.kts": ["alias(libs.plugins.kotlin.jvm)"],
}


def main() -> int:
    problems = []
    xml_files = [
        p for p in sorted(ROOT.rglob("*.xml")) if not SKIPPED_DIRS & set(p.relative_to(ROOT).parts)
    ]
    for path in xml_files:
        try:
            ET.parse(path)
        except ET.ParseError as e:
            problems.append(f"{path.relative_to(ROOT)}: malformed XML: {e}")
    for name, needles in REQUIRED.items():
        path = ROOT / name
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        problems += [f"{name}: does not mention {n}" for n in needles if n not in text]
    for problem in problems:
        print(problem)
    print(
        f"{len(xml_files)} XML files parsed, {len(REQUIRED)} Gradle files checked: "
        f"{len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
