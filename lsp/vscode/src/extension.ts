// asmr-daemon for VS Code: connects to the running daemon's language server.
//
// The daemon keeps the model loaded and serves every editor, so the extension starts no
// process: it opens a stream to the daemon's Unix socket (or host:port) for each session.
import * as net from "net";
import * as os from "os";
import * as path from "path";
import * as vscode from "vscode";
import { LanguageClient, LanguageClientOptions, StreamInfo } from "vscode-languageclient/node";

let client: LanguageClient | undefined;

function defaultSocket(): string {
  const runtime = process.env.XDG_RUNTIME_DIR || path.join(os.homedir(), ".local", "state", "asmr-daemon", "run");
  return path.join(runtime, "asmr-daemon", "lsp.sock");
}

// "host:port" or "[::1]:port" -> TCP; anything else is a socket path.
function connectOptions(address: string): net.NetConnectOpts {
  const tcp = /^\[?([^\]]*?)\]?:(\d+)$/.exec(address);
  if (tcp && !address.includes("/")) {
    return { host: tcp[1] || "127.0.0.1", port: Number(tcp[2]) };
  }
  return { path: address };
}

function serverOptions(address: string): () => Promise<StreamInfo> {
  return () =>
    new Promise((resolve, reject) => {
      const socket = net.connect(connectOptions(address));
      socket.once("connect", () => resolve({ reader: socket, writer: socket }));
      socket.once("error", (err) =>
        reject(new Error(`asmr-daemon is not reachable at ${address} (${err.message}); start it with \`asmr-daemon serve\``)),
      );
    });
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const config = vscode.workspace.getConfiguration("asmr");
  const address = config.get<string>("address") || defaultSocket();
  const token = config.get<string>("token") || undefined;

  const clientOptions: LanguageClientOptions = {
    documentSelector: ["plaintext", "srt", "subrip", "vtt", "webvtt", "lrc"].map((language) => ({ language })),
    initializationOptions: token ? { token } : {},
  };
  client = new LanguageClient("asmr-daemon", "asmr-daemon", serverOptions(address), clientOptions);

  context.subscriptions.push(
    vscode.commands.registerCommand("asmr.translateDocumentCommand", async () => {
      const editor = vscode.window.activeTextEditor;
      if (!editor || !client) {
        return;
      }
      await client.sendRequest("workspace/executeCommand", {
        command: "asmr.translateDocument",
        arguments: [editor.document.uri.toString()],
      });
    }),
  );
  await client.start();
}

export async function deactivate(): Promise<void> {
  if (client) {
    await client.stop();
  }
}
