namespace Millrace.Web;

/// <summary>A file that came in over HTTP or through a watched folder: one item of a web source's stream.</summary>
/// <param name="Id">Its item id: the client's (header <c>Millrace-Item-Id</c>), or made when it was accepted; for a folder, its name and a hash of its content. Use it as the database key: a file sent again keeps its id.</param>
/// <param name="Name">Its file name (the multipart file name, <c>?name=</c>, or the folder file's name); the id when none was given.</param>
/// <param name="ContentType">Its media type as sent (<c>application/octet-stream</c> when not said).</param>
/// <param name="Content">Its bytes (never empty).</param>
/// <param name="ReceivedAt">When it was accepted.</param>
/// <param name="Origin"><c>http</c> or <c>folder</c>.</param>
public sealed record IncomingFile(string Id, string Name, string ContentType, byte[] Content, DateTimeOffset ReceivedAt, string Origin);
