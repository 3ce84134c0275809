// Test certificates made with the openssl command: a CA, a server
// certificate for 127.0.0.1 / localhost, client certificates for
// "orders-service" and "ops", and one ("intruder") from another CA.
#ifndef TXCOORD_TESTS_TESTING_PKI_H_
#define TXCOORD_TESTS_TESTING_PKI_H_

#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>

namespace txcoord::testing {

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline int Sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

// A CA, a server certificate for 127.0.0.1, client certificates for
// "orders-service" and "ops", and one from another CA.
class Pki {
 public:
  explicit Pki(const std::string& dir) : dir_(dir) {
    auto req = [&](const std::string& name, const std::string& cn) {
      return Sh("openssl req -new -newkey rsa:2048 -nodes -keyout " + dir_ + "/" + name + ".key -out " + dir_ + "/" +
                name + ".csr -subj /CN=" + cn);
    };
    ok_ = Sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout " + dir_ + "/ca.key -out " + dir_ +
             "/ca.pem -subj /CN=txcoord-test-ca") == 0 &&
          Sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout " + dir_ + "/rogue.key -out " + dir_ +
             "/rogue.pem -subj /CN=rogue-ca") == 0;
    {
      std::ofstream ext(dir_ + "/server.ext");
      ext << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    }
    ok_ = ok_ && req("server", "localhost") == 0 &&
          Sh("openssl x509 -req -in " + dir_ + "/server.csr -CA " + dir_ + "/ca.pem -CAkey " + dir_ +
             "/ca.key -CAcreateserial -days 2 -extfile " + dir_ + "/server.ext -out " + dir_ + "/server.pem") == 0;
    for (const auto& [name, cn, ca] : {std::tuple{"orders", "orders-service", "ca"}, std::tuple{"ops", "ops", "ca"},
                                       std::tuple{"intruder", "orders-service", "rogue"}}) {
      ok_ = ok_ && req(name, cn) == 0 &&
            Sh(std::string("openssl x509 -req -in ") + dir_ + "/" + name + ".csr -CA " + dir_ + "/" + ca +
               ".pem -CAkey " + dir_ + "/" + ca + ".key -CAcreateserial -days 2 -out " + dir_ + "/" + name +
               ".pem") == 0;
    }
  }
  bool ok() const { return ok_; }
  std::string Path(const std::string& f) const { return dir_ + "/" + f; }
  std::shared_ptr<grpc::ChannelCredentials> Client(const std::string& who = "") const {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ReadFile(Path("ca.pem"));
    if (!who.empty()) {
      o.pem_cert_chain = ReadFile(Path(who + ".pem"));
      o.pem_private_key = ReadFile(Path(who + ".key"));
    }
    return grpc::SslCredentials(o);
  }

 private:
  std::string dir_;
  bool ok_ = false;
};

}  // namespace txcoord::testing

#endif  // TXCOORD_TESTS_TESTING_PKI_H_
