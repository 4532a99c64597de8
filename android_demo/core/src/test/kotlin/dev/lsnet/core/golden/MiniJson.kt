package dev.lsnet.core.golden

/**
 * A small JSON reader for the golden files (the core module has no dependencies): objects become
 * `Map<String, Any?>`, arrays `List<Any?>`, numbers `Double`, plus `String`, `Boolean` and null.
 */
class MiniJson private constructor(private val text: String) {
    private var pos = 0

    companion object {
        /** Parses a whole JSON document. */
        fun parse(text: String): Any? = MiniJson(text).run {
            val value = value()
            skipSpace()
            require(pos == text.length) { "trailing characters at $pos" }
            value
        }
    }

    private fun value(): Any? {
        skipSpace()
        return when (val c = peek()) {
            '{' -> obj()
            '[' -> array()
            '"' -> string()
            't' -> literal("true", true)
            'f' -> literal("false", false)
            'n' -> literal("null", null)
            else -> if (c == '-' || c.isDigit()) number() else error("unexpected '$c' at $pos")
        }
    }

    private fun obj(): Map<String, Any?> {
        val map = LinkedHashMap<String, Any?>()
        expect('{')
        if (skipSpace().peek() == '}') return map.also { pos++ }
        do {
            skipSpace()
            val key = string()
            skipSpace().expect(':')
            map[key] = value()
        } while (skipSpace().next() == ',')
        check(text[pos - 1] == '}') { "expected '}' at ${pos - 1}" }
        return map
    }

    private fun array(): List<Any?> {
        val list = ArrayList<Any?>()
        expect('[')
        if (skipSpace().peek() == ']') return list.also { pos++ }
        do list.add(value()) while (skipSpace().next() == ',')
        check(text[pos - 1] == ']') { "expected ']' at ${pos - 1}" }
        return list
    }

    private fun string(): String {
        expect('"')
        val sb = StringBuilder()
        while (true) {
            when (val c = next()) {
                '"' -> return sb.toString()
                '\\' -> when (val e = next()) {
                    'n' -> sb.append('\n')
                    't' -> sb.append('\t')
                    'r' -> sb.append('\r')
                    'b' -> sb.append('\b')
                    'f' -> sb.append('\u000C')
                    'u' -> sb.append(text.substring(pos, pos + 4).toInt(16).toChar()).also { pos += 4 }
                    else -> sb.append(e)
                }
                else -> sb.append(c)
            }
        }
    }

    private fun number(): Double {
        val start = pos
        while (pos < text.length && (text[pos].isDigit() || text[pos] in "+-.eE")) pos++
        return text.substring(start, pos).toDouble()
    }

    private fun literal(word: String, result: Any?): Any? {
        check(text.startsWith(word, pos)) { "expected $word at $pos" }
        pos += word.length
        return result
    }

    private fun skipSpace(): MiniJson = apply { while (pos < text.length && text[pos].isWhitespace()) pos++ }
    private fun peek(): Char = if (pos < text.length) text[pos] else error("unexpected end of JSON")
    private fun next(): Char = peek().also { pos++ }
    private fun expect(c: Char) = check(next() == c) { "expected '$c' at ${pos - 1}" }
}
