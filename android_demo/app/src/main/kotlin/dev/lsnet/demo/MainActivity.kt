package dev.lsnet.demo

import android.Manifest
import android.content.pm.PackageManager
import android.os.Bundle
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.ComponentActivity
import androidx.activity.result.ActivityResultLauncher
import androidx.activity.result.contract.ActivityResultContracts
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import androidx.lifecycle.Lifecycle
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.Environment
import dev.lsnet.core.ArgbImage
import dev.lsnet.core.Backend
import dev.lsnet.core.CameraPermission
import dev.lsnet.core.Choice
import dev.lsnet.core.LABELS_ASSET
import dev.lsnet.core.LatencyWindow
import dev.lsnet.core.ModelVariant
import dev.lsnet.core.PermissionStep
import dev.lsnet.core.formatReport
import dev.lsnet.core.parseLabels
import java.util.concurrent.Executors

/** Camera preview with the live top-5; the accelerator and the model are picked at run time. */
class MainActivity : ComponentActivity() {
    private lateinit var result: TextView
    private lateinit var env: Environment
    private lateinit var labels: List<String>
    private var cameraProvider: ProcessCameraProvider? = null
    private val analysisThread = Executors.newSingleThreadExecutor()

    @Volatile
    private var wanted = Choice(Backend.GPU, Backend.GPU.defaultModel)

    // Used on analysisThread only.
    private var classifier: LiteRtClassifier? = null
    private var failed: Choice? = null
    private val latency = LatencyWindow()

    // Asked once; a re-created activity (rotation, resizing) waits for the pending answer.
    private lateinit var permission: CameraPermission
    // Both types are declared: inferred, this property and follow() depend on each other, which
    // Kotlin reports as "Type checking has run into a recursive problem".
    private val cameraPermission: ActivityResultLauncher<String> =
        registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
            follow(permission.onAnswer(granted))
        }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        result = findViewById(R.id.result)
        permission = CameraPermission(savedInstanceState?.getString(PERMISSION_STATE))
        try {
            labels = assets.open(LABELS_ASSET).bufferedReader().use { parseLabels(it.readText()) }
            env = Environment.create(this)
        } catch (e: Exception) {
            result.text = getString(R.string.setup_failed, e.message)
            return
        } catch (e: LinkageError) { // LiteRT's native library did not load: an Error, not an Exception
            result.text = getString(R.string.setup_failed, e.message)
            return
        }
        setUpChoices(offeredBackends())
        val granted = checkSelfPermission(Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED
        follow(permission.onCreate(granted))
    }

    override fun onSaveInstanceState(outState: Bundle) {
        super.onSaveInstanceState(outState)
        if (::permission.isInitialized) outState.putString(PERMISSION_STATE, permission.saved)
    }

    private fun follow(step: PermissionStep): Unit = when (step) {
        PermissionStep.START_CAMERA -> startCamera()
        PermissionStep.ASK -> cameraPermission.launch(Manifest.permission.CAMERA)
        PermissionStep.WAIT_FOR_ANSWER -> Unit // the answer comes to the callback above
        PermissionStep.SHOW_DENIED -> result.setText(R.string.camera_denied)
    }

    override fun onDestroy() {
        super.onDestroy()
        cameraProvider?.unbindAll()
        analysisThread.execute {
            classifier?.close()
            if (::env.isInitialized) env.close()
        }
        analysisThread.shutdown()
    }

    /** GPU and CPU always; NPU only when LiteRT reports one (this build bundles no NPU runtime). */
    private fun offeredBackends(): List<Backend> {
        val npu = runCatching { Accelerator.NPU in env.getAvailableAccelerators() }.getOrDefault(false)
        return if (npu) Backend.entries else listOf(Backend.GPU, Backend.CPU)
    }

    private fun setUpChoices(backends: List<Backend>) {
        val backendSpinner = findViewById<Spinner>(R.id.backend)
        val modelSpinner = findViewById<Spinner>(R.id.model)
        val models = ModelVariant.entries
        backendSpinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, backends)
        modelSpinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, models)
        backendSpinner.onItemSelectedListener = onSelected { i ->
            wanted = Choice(backends[i], backends[i].defaultModel)
            modelSpinner.setSelection(models.indexOf(backends[i].defaultModel))
        }
        modelSpinner.onItemSelectedListener = onSelected { i -> wanted = wanted.copy(model = models[i]) }
    }

    private fun onSelected(action: (Int) -> Unit) = object : AdapterView.OnItemSelectedListener {
        override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) = action(position)
        override fun onNothingSelected(parent: AdapterView<*>?) = Unit
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            // The provider can arrive after the activity was destroyed (closed during start-up);
            // binding then throws and the analysis executor is already shut down. This listener and
            // onDestroy both run on the main thread, so the check cannot race with destruction.
            if (lifecycle.currentState == Lifecycle.State.DESTROYED) return@addListener
            val provider = try {
                future.get()
            } catch (e: Exception) {
                result.text = getString(R.string.camera_failed, e.cause?.message ?: e.message)
                return@addListener
            }
            val preview = Preview.Builder().build()
            preview.setSurfaceProvider(findViewById<PreviewView>(R.id.preview).surfaceProvider)
            val analysis = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(analysisThread) { image -> image.use(::analyze) }
            // The back camera when there is one (the manifest admits camera.any devices).
            val selector = listOf(CameraSelector.DEFAULT_BACK_CAMERA, CameraSelector.DEFAULT_FRONT_CAMERA)
                .firstOrNull { runCatching { provider.hasCamera(it) }.getOrDefault(false) }
            if (selector == null) {
                result.setText(R.string.no_camera)
                return@addListener
            }
            try {
                provider.unbindAll()
                provider.bindToLifecycle(this@MainActivity, selector, preview, analysis)
                cameraProvider = provider
            } catch (e: Exception) {
                result.text = getString(R.string.camera_failed, e.message)
            }
        }, ContextCompat.getMainExecutor(this))
    }

    /** Runs on analysisThread for each frame CameraX hands over. */
    private fun analyze(image: ImageProxy) {
        val choice = wanted
        val current = classifierFor(choice) ?: return
        val text = try {
            val bitmap = image.toBitmap()
            val pixels = IntArray(bitmap.width * bitmap.height)
            bitmap.getPixels(pixels, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
            val frame = ArgbImage(pixels, bitmap.width, bitmap.height)
            val (top5, ms) = current.classify(frame, image.imageInfo.rotationDegrees)
            latency.add(ms)
            formatReport(current.compiled.ran.ran, choice.model, current.compiled.note, top5, latency)
        } catch (e: Exception) {
            getString(R.string.run_failed, choice, e.message)
        }
        runOnUiThread { result.text = text }
    }

    /**
     * The classifier for [choice], rebuilt when the choice changes; null after a failed build
     * (which closed whatever it had created).
     */
    private fun classifierFor(choice: Choice): LiteRtClassifier? {
        classifier?.let { if (it.choice == choice) return it }
        if (choice == failed) return null
        classifier?.close()
        classifier = null
        latency.clear()
        return try {
            LiteRtClassifier(this, env, labels, choice).also {
                classifier = it
                failed = null
            }
        } catch (e: Exception) {
            loadFailed(choice, e)
        } catch (e: LinkageError) { // a delegate's native library did not load
            loadFailed(choice, e)
        }
    }

    private fun loadFailed(choice: Choice, e: Throwable): LiteRtClassifier? {
        failed = choice
        val text = getString(R.string.load_failed, choice, e.message)
        runOnUiThread { result.text = text }
        return null
    }
}

private const val PERMISSION_STATE = "camera_permission"
