package dev.lsnet.core

import org.junit.runner.Description
import org.junit.runner.JUnitCore
import org.junit.runner.notification.Failure
import org.junit.runner.notification.RunListener
import kotlin.system.exitProcess

/**
 * Runs the JUnit 4 test classes named in [args] (used by test.sh, which has no Gradle). Prints
 * each failure and each skipped test (assumption not met: not counted as passed), then the
 * closing line `N passed, N failed`. Exits non-zero on any failure or when nothing passed.
 */
fun main(args: Array<String>) {
    val junit = JUnitCore()
    junit.addListener(object : RunListener() {
        override fun testFailure(failure: Failure) {
            println("FAILED ${failure.testHeader}\n${failure.trace}")
        }

        override fun testAssumptionFailure(failure: Failure) {
            println("SKIPPED ${failure.testHeader}: ${failure.message}")
        }

        override fun testIgnored(description: Description) {
            println("SKIPPED ${description.displayName}: @Ignore")
        }
    })
    val result = junit.run(*args.map { Class.forName(it) }.toTypedArray())
    val passed = result.runCount - result.failureCount - result.assumptionFailureCount
    val skipped = result.assumptionFailureCount + result.ignoreCount
    println("$skipped skipped")
    println("$passed passed, ${result.failureCount} failed")
    exitProcess(if (result.failureCount == 0 && passed > 0) 0 else 1)
}
