package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class LabelsTest {
    private val abc = listOf("tench", "goldfish", "great white shark")

    @Test
    fun toleratesLineEndsBomAndSpaces() {
        assertEquals(abc, parseLabels("tench\ngoldfish\ngreat white shark"))
        assertEquals(abc, parseLabels("tench\ngoldfish\ngreat white shark\n"))
        assertEquals(abc, parseLabels("tench\r\ngoldfish\r\ngreat white shark\r\n"))
        assertEquals(abc, parseLabels("\uFEFFtench\ngoldfish\ngreat white shark\n"))
        assertEquals(abc, parseLabels("  tench\t\ngoldfish \ngreat white shark\n"))
    }

    @Test
    fun blankLinesAreErrors() {
        val e = assertFailsWith<IllegalArgumentException> { parseLabels("tench\n\ngoldfish\n") }
        assertTrue("line 2" in e.message!!)
        assertFailsWith<IllegalArgumentException> { parseLabels("tench\ngoldfish\n\n") }
        assertFailsWith<IllegalArgumentException> { parseLabels("tench\n   \ngoldfish") }
    }

    @Test
    fun emptyFilesAreErrors() {
        for (text in listOf("", "\n", "\uFEFF", "\r\n")) {
            assertFailsWith<IllegalArgumentException>(text) { parseLabels(text) }
        }
    }
}
