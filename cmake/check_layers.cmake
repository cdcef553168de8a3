# Fails when an include crosses a layer the wrong way:
#   library (include/coroute, src/*.cpp|hpp)  may include nothing of src/app or src/server;
#   app (src/app)  and binary (src/server)   may include the library's public headers
#                                             (<coroute/...>) but none of its private ones.
# usage: cmake -DSOURCE_DIR=<top> -P check_layers.cmake
file(GLOB library_files ${SOURCE_DIR}/include/coroute/*.hpp ${SOURCE_DIR}/include/coroute/*.in
                        ${SOURCE_DIR}/src/*.cpp ${SOURCE_DIR}/src/*.hpp)
file(GLOB outer_files ${SOURCE_DIR}/src/app/*.cpp ${SOURCE_DIR}/src/app/*.hpp
                      ${SOURCE_DIR}/src/server/*.cpp ${SOURCE_DIR}/src/server/*.hpp)
file(GLOB private_headers RELATIVE ${SOURCE_DIR}/src ${SOURCE_DIR}/src/*.hpp)
list(REMOVE_ITEM private_headers pch.hpp)

set(problems "")
foreach(f IN LISTS library_files)
  file(STRINGS ${f} lines REGEX "^[ \t]*#[ \t]*include")
  foreach(line IN LISTS lines)
    if(line MATCHES "[\"<](app|server)/")
      string(APPEND problems "\n  ${f}: the library includes the app or the binary: ${line}")
    endif()
  endforeach()
endforeach()
foreach(f IN LISTS outer_files)
  file(STRINGS ${f} lines REGEX "^[ \t]*#[ \t]*include")
  foreach(line IN LISTS lines)
    foreach(h IN LISTS private_headers)
      if(line MATCHES "[\"</]${h}[\">]" AND NOT line MATCHES "[\"<](app|server)/")
        string(APPEND problems "\n  ${f}: includes the library's private header ${h}: ${line}")
      endif()
    endforeach()
    if(f MATCHES "/src/app/" AND line MATCHES "[\"<]server/")
      string(APPEND problems "\n  ${f}: the app includes the binary: ${line}")
    endif()
  endforeach()
endforeach()
if(problems)
  message(FATAL_ERROR "include layers broken:${problems}")
endif()
