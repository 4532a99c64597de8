pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google() // LiteRT, CameraX, AndroidX
        mavenCentral()
    }
}

rootProject.name = "lsnet-demo"
include(":app", ":core")
