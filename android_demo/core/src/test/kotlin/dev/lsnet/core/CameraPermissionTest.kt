package dev.lsnet.core

import kotlin.test.Test
import kotlin.test.assertEquals

class CameraPermissionTest {
    /** The activity re-created (rotation): a new flow from the saved state. */
    private fun recreate(flow: CameraPermission) = CameraPermission(flow.saved)

    @Test
    fun grantedStartsTheCameraWithoutAsking() {
        assertEquals(PermissionStep.START_CAMERA, CameraPermission(null).onCreate(granted = true))
    }

    @Test
    fun asksOnceAndARotatedActivityWaitsForTheAnswer() {
        val first = CameraPermission(null)
        assertEquals(PermissionStep.ASK, first.onCreate(granted = false))
        val rotated = recreate(first)
        assertEquals(PermissionStep.WAIT_FOR_ANSWER, rotated.onCreate(granted = false))
        assertEquals(PermissionStep.START_CAMERA, rotated.onAnswer(granted = true))
        assertEquals(PermissionStep.START_CAMERA, recreate(rotated).onCreate(granted = true))
    }

    @Test
    fun aRefusalIsShownNotAskedAgainOnRotation() {
        val flow = CameraPermission(null)
        flow.onCreate(granted = false)
        assertEquals(PermissionStep.SHOW_DENIED, flow.onAnswer(granted = false))
        assertEquals(PermissionStep.SHOW_DENIED, recreate(flow).onCreate(granted = false))
    }

    @Test
    fun unknownSavedStateStartsOver() {
        assertEquals(PermissionStep.ASK, CameraPermission("garbage").onCreate(granted = false))
    }
}
