package dev.lsnet.core

/** What the activity does about the camera permission at a given moment. */
enum class PermissionStep { START_CAMERA, ASK, WAIT_FOR_ANSWER, SHOW_DENIED }

/**
 * The camera-permission flow across activity re-creations (rotation, resizing): the request is
 * made once; a re-created activity waits for the answer still pending (the Activity Result API
 * delivers it to the new activity) or shows the refusal, instead of asking again.
 *
 * Keep [saved] in the activity's saved state and pass it back on re-creation.
 *
 * Example: `val flow = CameraPermission(savedInstanceState?.getString(KEY))`, then act on
 * `flow.onCreate(granted)`, and on `flow.onAnswer(granted)` in the request's callback.
 */
class CameraPermission(saved: String?) {
    private enum class State { NOT_ASKED, ASKING, DENIED }

    private var state = saved?.let { s -> State.entries.firstOrNull { it.name == s } } ?: State.NOT_ASKED

    /** The state to save (`onSaveInstanceState`). */
    val saved: String get() = state.name

    /** The step when the activity is created, given whether the permission is [granted] now. */
    fun onCreate(granted: Boolean): PermissionStep = when {
        granted -> PermissionStep.START_CAMERA
        state == State.NOT_ASKED -> PermissionStep.ASK.also { state = State.ASKING }
        state == State.ASKING -> PermissionStep.WAIT_FOR_ANSWER
        else -> PermissionStep.SHOW_DENIED
    }

    /** The step when the answer to the request arrives. */
    fun onAnswer(granted: Boolean): PermissionStep {
        state = if (granted) State.NOT_ASKED else State.DENIED
        return if (granted) PermissionStep.START_CAMERA else PermissionStep.SHOW_DENIED
    }
}
