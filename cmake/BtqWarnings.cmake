# btq_warnings(<target>)
#
# Enables strict warnings on one of btq's own (non-INTERFACE) targets: tests,
# examples, benchmarks. The options are PRIVATE, so they never propagate
# through btq::btq to consumers. -Werror is controlled by BTQ_WERROR.
function(btq_warnings target)
    if(MSVC)
        target_compile_options(${target} PRIVATE /W4 /permissive-)
        if(BTQ_WERROR)
            target_compile_options(${target} PRIVATE /WX)
        endif()
        return()
    endif()

    target_compile_options(${target} PRIVATE
        -Wall -Wextra -Wpedantic -Wconversion -Wshadow)
    # GCC 12 at -O2/-O3 reports false -Wrestrict overlaps inside libstdc++'s std::string
    # (GCC bug 105329, fixed in GCC 13): where depends on what else got inlined, so the same
    # line warns or not from one build to the next. Off for GCC 12 only.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
        target_compile_options(${target} PRIVATE -Wno-restrict)
    endif()
    if(BTQ_WERROR)
        target_compile_options(${target} PRIVATE -Werror)
        # GCC's sanitizer instrumentation produces false -Wmaybe-uninitialized
        # reports inside libstdc++ (e.g. std::function moves); the GCC manual
        # warns against combining sanitizers with -Werror. Keep the warning,
        # but do not fail sanitizer builds on it.
        if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_FLAGS MATCHES "-fsanitize=")
            target_compile_options(${target} PRIVATE -Wno-error=maybe-uninitialized)
        endif()
    endif()
endfunction()
