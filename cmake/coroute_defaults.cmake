# Warnings and sanitizers for our own targets only; nothing here is exported.
function(coroute_defaults target)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
  # GCC 12 misreads Asio's recycling allocator for coroutine frames as a new/free mismatch.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${target} PRIVATE -Wno-mismatched-new-delete)
  endif()
  if(COROUTE_FUZZ)
    # Coverage for libFuzzer in everything the targets link; the targets add the driver.
    # Without UBSan's `function` check: clang 14 cannot emit it beside the coverage
    # counters in coroutine code ("Cannot represent a difference across sections").
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=function
                                             -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  elseif(COROUTE_TSAN)
    # -O1: TSan's reports keep their frames and the run is still several times faster
    # than -O0. GCC 12 warns in every file that includes Asio that TSan does not model
    # std::atomic_thread_fence (Asio's std_fenced_block); tests/tsan.supp says why that
    # is not a source of reports here, so the warning is off.
    target_compile_options(${target} PRIVATE -fsanitize=thread -fno-omit-frame-pointer -O1 -g)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      target_compile_options(${target} PRIVATE -Wno-tsan)
    endif()
    target_link_options(${target} PRIVATE -fsanitize=thread)
  elseif(COROUTE_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()

# One precompiled header for every target that includes Asio and Beast.
function(coroute_pch target)
  if(COROUTE_PCH)
    if(TARGET coroute AND NOT target STREQUAL "coroute")
      target_precompile_headers(${target} REUSE_FROM coroute)
    else()
      # Named as <pch.hpp>, not by its absolute path: the generated cmake_pch.hxx then
      # reads the same in every clone, so ccache can share the header between them.
      target_precompile_headers(${target} PRIVATE <pch.hpp>)
      target_include_directories(${target} PRIVATE $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/src>)
    endif()
  endif()
endfunction()
