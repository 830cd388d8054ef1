# The orchestrator's independent parts (owner: orch2): webhook signatures,
# cloud-environment packages -> snapshots, per-session preparation.
# Included from src/orchestrator/CMakeLists.txt. Domain code: depends on
# common and sandbox only (never on http/ or api/).
add_library(warren_orchestrator_parts webhooks.cc packages.cc prepare.cc networking.cc)
target_link_libraries(warren_orchestrator_parts PUBLIC warren_common warren_sandbox OpenSSL::Crypto)

add_executable(warren-webhook-tool webhook_tool.cc)
target_link_libraries(warren-webhook-tool PRIVATE warren_orchestrator_parts)

warren_test(orchestrator_parts_test
  SOURCES webhooks_test.cc packages_test.cc prepare_test.cc networking_test.cc
  LIBS warren_orchestrator_parts)
if(TARGET orchestrator_parts_test)
  target_compile_definitions(orchestrator_parts_test PRIVATE
    WARREN_WEBHOOK_VECTORS="${CMAKE_CURRENT_SOURCE_DIR}/testdata/standardwebhooks_vectors.json")
endif()
