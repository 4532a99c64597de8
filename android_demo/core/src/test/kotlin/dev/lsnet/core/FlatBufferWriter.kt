package dev.lsnet.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Test-only flatbuffer serializer for hand-made `.tflite` files: writes a tree of [Fb] values
 * parents first, so every offset points forward as the format requires.
 */
sealed interface Fb {
    /** A table; `fields[i]` is field id i, null when absent. */
    class Table(vararg val fields: Fb?) : Fb

    /** An inline byte scalar (e.g. an enum). */
    class I8(val value: Int) : Fb

    /** An inline 32-bit scalar. */
    class I32(val value: Int) : Fb

    /** A string. */
    class Str(val value: String) : Fb

    /** A vector of 32-bit ints. */
    class Ints(vararg val values: Int) : Fb

    /** A vector of bytes. */
    class Bytes(vararg val values: Byte) : Fb

    /** A vector of floats. */
    class Floats(vararg val values: Float) : Fb

    /** A vector of 64-bit ints. */
    class Longs(vararg val values: Long) : Fb

    /** A vector of tables. */
    class Tables(vararg val values: Table) : Fb

    companion object {
        /** Serializes [root] with the 4-byte [identifier] after the root offset. */
        fun file(root: Table, identifier: String = "TFL3"): ByteArray {
            val buf = ByteBuffer.allocate(1 shl 16).order(ByteOrder.LITTLE_ENDIAN)
            buf.position(8)
            buf.put(4, identifier.toByteArray(Charsets.US_ASCII), 0, 4)
            buf.putInt(0, write(buf, root))
            return buf.array().copyOf(buf.position())
        }

        private fun write(buf: ByteBuffer, value: Fb): Int {
            align(buf, 8)
            return when (value) {
                is Table -> table(buf, value)
                is Str -> value.value.toByteArray().let { bytes -> vector(buf, bytes.size) { buf.put(bytes).put(0) } }
                is Bytes -> vector(buf, value.values.size) { buf.put(value.values) }
                is Ints -> vector(buf, value.values.size) { value.values.forEach(buf::putInt) }
                is Floats -> vector(buf, value.values.size) { value.values.forEach(buf::putFloat) }
                is Longs -> {
                    buf.putInt(0) // so that the elements after the length are 8-byte aligned
                    vector(buf, value.values.size) { value.values.forEach(buf::putLong) }
                }
                is Tables -> {
                    val start = vector(buf, value.values.size) { repeat(value.values.size) { buf.putInt(0) } }
                    value.values.forEachIndexed { i, t -> patch(buf, start + 4 + 4 * i, write(buf, t)) }
                    start
                }
                is I8, is I32 -> error("scalars are written inline")
            }
        }

        private fun vector(buf: ByteBuffer, count: Int, body: () -> Unit): Int {
            val start = buf.position()
            buf.putInt(count)
            body()
            return start
        }

        private fun table(buf: ByteBuffer, t: Table): Int {
            val vtable = buf.position()
            buf.position(vtable + 4 + 2 * t.fields.size)
            align(buf, 4)
            val start = buf.position()
            buf.putInt(start - vtable)
            val refs = mutableListOf<Pair<Int, Fb>>()
            t.fields.forEachIndexed { id, f ->
                if (f == null) return@forEachIndexed
                buf.putShort(vtable + 4 + 2 * id, (buf.position() - start).toShort())
                when (f) {
                    is I8 -> buf.putInt(f.value)
                    is I32 -> buf.putInt(f.value)
                    else -> refs += buf.position() to f.also { buf.putInt(0) }
                }
            }
            buf.putShort(vtable, (4 + 2 * t.fields.size).toShort())
            buf.putShort(vtable + 2, (buf.position() - start).toShort())
            refs.forEach { (at, f) -> patch(buf, at, write(buf, f)) }
            return start
        }

        private fun patch(buf: ByteBuffer, at: Int, target: Int) = buf.putInt(at, target - at)

        private fun align(buf: ByteBuffer, n: Int) {
            while (buf.position() % n != 0) buf.put(0)
        }
    }
}
