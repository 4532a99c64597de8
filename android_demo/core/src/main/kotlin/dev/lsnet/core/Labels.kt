package dev.lsnet.core

/**
 * Parses `labels.txt`: one label per line, in class-index order. Tolerates a UTF-8 byte-order
 * mark, CRLF (or CR) line ends, one final line end, and spaces around a label. A blank line is an
 * error, since it would shift every later index; so is a file without labels.
 */
fun parseLabels(text: String): List<String> {
    val lines = text.removePrefix("\uFEFF").lines().map { it.trim() }
    val labels = if (lines.size > 1 && lines.last().isEmpty()) lines.dropLast(1) else lines
    require(labels != listOf("")) { "labels file is empty" }
    labels.forEachIndexed { i, label -> require(label.isNotEmpty()) { "labels file: line ${i + 1} is blank" } }
    return labels
}
